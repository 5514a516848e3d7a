"""Parsing Payrails webhook bodies, and the event-id rule.

Event identity: Payrails documents no top-level event id for payment notifications (only payout
events carry ``id``). So: the body's ``id`` when it is a non-empty string (as it is when it fits
in 200 bytes, else ``"id_" + sha256(id)``, so that long ids neither collide nor break the AMQP
message id or the inbox key); otherwise
``"drv_" + sha256`` over the JSON array ``[event, details.actionId, details.success, time,
details.execution.id]``. A retried delivery repeats the same body, so it maps to the same id,
while a later action on the same execution (another actionId or time) gets a new one.

The ingress needs only an event's identity (``identify``), on every request: orjson parses the
body there when that provably gives what the stdlib parser would, else ``from_body`` decides.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import Any, NamedTuple

import orjson

from shared.errors import InvalidPayload
from shared.event_registry import Handling, handling
from shared.payloads import json_object
from shared.payrails.models import UNKNOWN_RESULTS

MAX_EVENT_ID_BYTES = 200  # the inbox key's width; AMQP message ids allow 255

# json.dumps(parts, separators=(",", ":"), sort_keys=True, default=str), built once: changing
# these bytes would change every derived id.
_CANONICAL_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=str).encode
_LITERALS = {True: "true", False: "false", None: "null"}
# orjson nests at most 1024 deep, the stdlib about as deep as the interpreter's recursion limit:
# a body with fewer brackets than this is within both.
_MAX_FAST_BRACKETS = 256


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
        if type(node) is not dict and not isinstance(node, Mapping):  # dict: the common case
            return None
        node = node.get(key)
    return node


def _id_parts(data: Mapping[str, Any]) -> list[Any]:
    return [
        data.get("event"),
        _get(data, "details", "actionId"),
        _get(data, "details", "success"),
        data.get("time"),
        _get(data, "details", "execution", "id"),
    ]


def _canonical(parts: Sequence[Any]) -> str:
    """``_CANONICAL_JSON(parts)``, built directly when every part is a string, bool or null."""
    out: list[str] = []
    for part in parts:
        if type(part) is str:
            out.append(encode_basestring_ascii(part))
        elif part is None or type(part) is bool:
            out.append(_LITERALS[part])
        else:  # numbers, lists, objects: the encoder's own rules
            return _CANONICAL_JSON(parts)
    return "[" + ",".join(out) + "]"


def derive_event_id(data: Mapping[str, Any]) -> str:
    """The delivery's stable id (see the module docstring for the rule)."""
    return _event_id(data.get("id"), _id_parts(data))


def _event_id(explicit: Any, parts: Sequence[Any]) -> str:
    if isinstance(explicit, str) and explicit:
        if len(explicit.encode()) <= MAX_EVENT_ID_BYTES:
            return explicit
        return "id_" + hashlib.sha256(explicit.encode()).hexdigest()
    return "drv_" + hashlib.sha256(_canonical(parts).encode()).hexdigest()[:40]


def _execution_id(data: Mapping[str, Any]) -> Any:
    return _get(data, "details", "execution", "id") or data.get("workflowExecutionId")


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
        return handling(self.name, self.action) is Handling.RECONCILE

    @property
    def unknown_result(self) -> str | None:
        """The unknown-family result this body reports for an authorize, if it reports one.

        ``details.operationResult``, any ``paymentComposition`` (or ``payments``) item's
        ``operationResult``, or ``errors[].reason.result`` in ``UNKNOWN_RESULTS``; or a payment
        whose ``status`` is ``Unknown``. Any item counts, not only the last: an unknown first
        attempt may have moved money whatever a later one did. A body about another action
        (capture, refund...) reports nothing about the authorization.
        """
        details = self.raw.get("details")
        if not isinstance(details, Mapping) or details.get("action") not in (None, "authorize"):
            return None
        return _unknown_result(details)

    @classmethod
    def from_body(cls, body: bytes) -> WebhookEvent:
        data = parse_object(body)
        exec_id = _execution_id(data)
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


def _unknown_result(details: Mapping[str, Any]) -> str | None:
    candidates: list[tuple[object, object]] = [(details.get("operationResult"), None)]
    for key in ("paymentComposition", "payments"):
        items = details.get(key)
        for item in items if isinstance(items, list) else ():
            if isinstance(item, Mapping):
                candidates.append((item.get("operationResult"), item.get("status")))
                candidates.extend((r, None) for r in _reason_results(item.get("errors")))
    candidates.extend((r, None) for r in _reason_results(details.get("errors")))
    for result, status in candidates:
        if isinstance(result, str) and result in UNKNOWN_RESULTS:
            return result
        if status == "Unknown":
            return "Unknown"
    return None


def _reason_results(errors: object) -> list[object]:
    if not isinstance(errors, list):
        return []
    reasons = [e.get("reason") for e in errors if isinstance(e, Mapping)]
    return [r.get("result") for r in reasons if isinstance(r, Mapping)]


class EventIdentity(NamedTuple):
    """What the ingress routes, identifies and logs a delivery by."""

    name: str
    event_id: str
    execution_id: str | None


def identify(body: bytes) -> EventIdentity:
    """The identity ``WebhookEvent.from_body`` gives, or the InvalidPayload it raises."""
    fast = _identify_fast(body)
    if fast is not None:
        return fast
    event = WebhookEvent.from_body(body)
    return EventIdentity(event.name, event.event_id, event.execution_id)


def _identify_fast(body: bytes) -> EventIdentity | None:
    """The identity through orjson, or None wherever orjson and the stdlib could disagree.

    orjson accepts strict UTF-8 RFC 8259 JSON, which the stdlib parses to the same values,
    except numbers (orjson reads integers past 64 bits as floats): so this answers only when
    every value the identity is made of is a string, a bool or null. Everything orjson refuses
    (lone surrogates, NaN, a BOM, UTF-16...) goes to the stdlib, which decides as before.
    """
    if body.count(b"{") + body.count(b"[") > _MAX_FAST_BRACKETS:
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict:
        return None
    name = data.get("event")
    if type(name) is not str or not name:
        return None
    explicit, exec_id, parts = data.get("id"), _execution_id(data), _id_parts(data)
    for value in (explicit, exec_id, *parts):
        if value is not None and type(value) is not str and type(value) is not bool:
            return None
    return EventIdentity(
        name, _event_id(explicit, parts), exec_id if type(exec_id) is str and exec_id else None
    )
