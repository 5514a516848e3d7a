"""Parsing Payrails webhook bodies, and the event-id rule.

Event identity: Payrails documents no top-level event id for payment notifications (only payout
events carry ``id``). So: the body's ``id`` when it is a non-empty string (as it is when it fits
in 200 bytes, else ``"id_" + sha256(id)``, so that long ids neither collide nor break the AMQP
message id or the inbox key); otherwise
``"drv_" + sha256`` over the JSON array ``[event, details.actionId, details.success, time,
details.execution.id]``. A retried delivery repeats the same body, so it maps to the same id,
while a later action on the same execution (another actionId or time) gets a new one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.errors import InvalidPayload
from shared.payloads import json_object

MAX_EVENT_ID_BYTES = 200  # the inbox key's width; AMQP message ids allow 255

# json.dumps(parts, separators=(",", ":"), sort_keys=True, default=str), built once: changing
# these bytes would change every derived id.
_CANONICAL_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=str).encode

RECONCILED_EVENTS = frozenset(
    {"executionActionCompleted", "executionActionPending", "executionActionUpdated"}
)


def parse_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object with a string ``event``; raise InvalidPayload otherwise."""
    data = json_object(body, "body")
    event = data.get("event")
    if not isinstance(event, str) or not event:
        raise InvalidPayload("body has no string 'event' field")
    return data


def _get(data: Mapping[str, Any], *path: str) -> Any:
    node: Any = data
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def derive_event_id(data: Mapping[str, Any]) -> str:
    """The delivery's stable id (see the module docstring for the rule)."""
    explicit = data.get("id")
    if isinstance(explicit, str) and explicit:
        if len(explicit.encode()) <= MAX_EVENT_ID_BYTES:
            return explicit
        return "id_" + hashlib.sha256(explicit.encode()).hexdigest()
    parts = [
        data.get("event"),
        _get(data, "details", "actionId"),
        _get(data, "details", "success"),
        data.get("time"),
        _get(data, "details", "execution", "id"),
    ]
    canonical = _CANONICAL_JSON(parts)
    return "drv_" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """The fields of a webhook the worker needs; the rest stays in ``raw``."""

    event_id: str
    name: str
    execution_id: str | None
    merchant_reference: str | None
    action: str | None
    success: bool | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_reconciled(self) -> bool:
        return self.name in RECONCILED_EVENTS

    @classmethod
    def from_body(cls, body: bytes) -> WebhookEvent:
        data = parse_object(body)
        exec_id = _get(data, "details", "execution", "id") or data.get("workflowExecutionId")
        reference = _get(data, "details", "execution", "merchantReference")
        success = _get(data, "details", "success")
        action = _get(data, "details", "action")
        return cls(
            event_id=derive_event_id(data),
            name=str(data["event"]),
            execution_id=exec_id if isinstance(exec_id, str) and exec_id else None,
            merchant_reference=reference if isinstance(reference, str) and reference else None,
            action=action if isinstance(action, str) else None,
            success=success if isinstance(success, bool) else None,
            raw=data,
        )
