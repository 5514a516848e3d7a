"""Commands the checkout sends to the worker over ``payments.commands``."""

from __future__ import annotations

import json
from dataclasses import dataclass

from shared.errors import InvalidPayload
from shared.payloads import json_object


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
