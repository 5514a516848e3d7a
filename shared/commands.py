"""Commands on ``payments.commands``: the checkout's ``authorize``, a backend's ``order.create``.

A backend's capture, cancel and refund commands are in ``shared.operation_intake``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from shared.errors import InvalidPayload
from shared.payloads import json_object
from shared.validation import OrderTerms, parse_order_terms

COMMAND_ID_MAX = 100  # the merchant_commands key's width


def answer_message_id(command_id: str) -> str:
    """Stable per command: the answer to a repeated command is recognisably the same message."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"recon:command:{command_id}"))


@dataclass(frozen=True, slots=True)
class AuthorizeCommand:
    """The ``authorize`` command the checkout publishes to ``payments.commands``."""

    order_reference: str
    execution_id: str

    @property
    def message_id(self) -> str:
        """Stable per order, so a republished command is recognisably the same one."""
        return f"authorize:{self.order_reference}"

    def to_body(self) -> bytes:
        return json.dumps(
            {"orderReference": self.order_reference, "executionId": self.execution_id}
        ).encode()

    @classmethod
    def from_body(cls, body: bytes) -> AuthorizeCommand:
        data = json_object(body, "authorize command")
        reference, execution_id = data.get("orderReference"), data.get("executionId")
        if not isinstance(reference, str) or not reference:
            raise InvalidPayload("authorize command has no orderReference")
        if not isinstance(execution_id, str) or not execution_id:
            raise InvalidPayload("authorize command has no executionId")
        return cls(reference, execution_id)


@dataclass(frozen=True, slots=True)
class CreateOrderCommand:
    """``order.create`` from a commerce backend: idempotent by its own ``commandId``."""

    command_id: str
    terms: OrderTerms

    @classmethod
    def from_body(cls, body: bytes, message_id: str | None) -> CreateOrderCommand:
        """The body's ``commandId``, else the AMQP message id; the order's terms, validated."""
        data = json_object(body, "order.create command")
        command_id = data.get("commandId") or message_id
        if not isinstance(command_id, str) or not 0 < len(command_id) <= COMMAND_ID_MAX:
            raise InvalidPayload(f"order.create needs a commandId of 1-{COMMAND_ID_MAX} characters")
        terms = parse_order_terms(data)
        if isinstance(terms, list):
            problems = "; ".join(f"{e.field}: {e.message}" for e in terms)
            raise InvalidPayload(f"order.create command is invalid: {problems}")
        return cls(command_id, terms)
