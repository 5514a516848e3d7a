"""Capture, cancel and refund requests from commerce backends, over HTTP or RabbitMQ.

Both doors parse the same request (``amount?``, ``final?``), store the operation with
``request_operation`` under the order's row lock, in the caller's transaction, and answer with
the same JSON: the operation and the order's money picture. The command id (the HTTP
``Idempotency-Key``, the command's ``commandId``) makes a request run once: a repeat gets the
stored operation again, a different request under the same id is refused (``command_reused``).

After the commit the caller hands the operation to the worker with ``operation.execute``
(``ExecuteOperation``); while the operation is still ``requested`` a repeat sends it again,
since the first publish may have failed. The worker executes an operation once, whatever the
number of such messages.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import Order, PaymentOperation
from shared.errors import InvalidPayload
from shared.money import Money
from shared.money_picture import MoneyPicture
from shared.operation_states import OperationKind, OperationState
from shared.operation_store import (
    CommandReused,
    operations_of,
    picture_of,
    request_operation,
)
from shared.order_store import lock_order
from shared.payloads import json_object
from shared.validation import REFERENCE, FieldError, amount_field, reference_field

COMMAND_ID_MAX = 64  # an Idempotency-Key or commandId: a UUID or a plain token


@dataclass(frozen=True, slots=True)
class OperationRequest:
    """What a commerce backend asks for: the kind, an amount (None: all that remains), final."""

    kind: OperationKind
    amount: Money | None = None
    final: bool = True


def parse_operation_request(
    kind: OperationKind, body: object
) -> OperationRequest | list[FieldError]:
    """A capture ``{amount?, final?}``, cancel ``{}`` or refund ``{amount?}`` body, validated.

    An empty body is an empty object. A cancel's amount is left for the money rules to refuse
    (``partial_cancel``), so both doors answer it the same way.
    """
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        return [FieldError("", "the body must be a JSON object")]
    errors: list[FieldError] = []
    amount = amount_field(body, errors, required=False)
    final = body.get("final", True)
    if kind is OperationKind.CAPTURE:
        if not isinstance(final, bool):
            errors.append(FieldError("final", "must be true or false"))
    elif "final" in body:
        errors.append(FieldError("final", f"only a capture takes it, not a {kind.value}"))
    if errors:
        return errors
    return OperationRequest(kind, amount, final is True)


def valid_command_id(value: object) -> str | None:
    """``value`` when it is a UUID or a plain token (letters, digits, ``. _ : -``) of 1-64."""
    if not isinstance(value, str) or not 0 < len(value) <= COMMAND_ID_MAX:
        return None
    return value if REFERENCE.match(value) else None


@dataclass(frozen=True, slots=True)
class OperationCommand:
    """``order.capture``, ``order.cancel`` or ``order.refund`` from a commerce backend."""

    command_id: str
    reference: str
    request: OperationRequest

    @classmethod
    def from_body(
        cls, body: bytes, message_id: str | None, kind: OperationKind
    ) -> OperationCommand:
        """The body's ``commandId`` (else the AMQP message id), ``orderReference`` and request."""
        what = f"order.{kind.value} command"
        data = json_object(body, what)
        command_id = valid_command_id(data.get("commandId") or message_id)
        errors: list[FieldError] = []
        if command_id is None:
            errors.append(FieldError("commandId", f"must be a UUID or token of 1-{COMMAND_ID_MAX}"))
        reference = reference_field(data, "orderReference", errors)
        fields = {k: v for k, v in data.items() if k not in ("commandId", "orderReference")}
        parsed = parse_operation_request(kind, fields)
        if isinstance(parsed, list):
            errors += parsed
        if errors or command_id is None or reference is None or isinstance(parsed, list):
            problems = "; ".join(f"{e.field}: {e.message}" for e in errors)
            raise InvalidPayload(f"{what} is invalid: {problems}")
        return cls(command_id, reference, parsed)


@dataclass(frozen=True, slots=True)
class ExecuteOperation:
    """``operation.execute``: the worker calls Payrails for one stored operation.

    ``operationId`` is the operation's public id, its UUIDv4 idempotency key.
    """

    operation_id: uuid.UUID

    @property
    def message_id(self) -> str:
        """Stable per operation: a message sent again is recognisably the same one."""
        return f"operation.execute:{self.operation_id}"

    def to_body(self) -> bytes:
        return json.dumps({"operationId": str(self.operation_id)}).encode()


def operation_json(row: PaymentOperation) -> dict[str, Any]:
    """One operation as commerce backends read it; ``id`` is its idempotency key."""
    return {
        "id": str(row.idempotency_key),
        "kind": row.kind.value,
        "amount": Money(row.amount_value, row.currency).to_json(),
        "final": row.final,
        "state": row.state.value,
        "resultCode": row.result_code,
        "createdAt": row.created_at.isoformat(),
    }


def money_json(picture: MoneyPicture) -> dict[str, str]:
    """The order's money picture: authorized, captured and refunded so far, in its currency."""
    return {
        "currency": picture.currency,
        "authorized": picture.money(picture.authorized).format_value(),
        "captured": picture.money(picture.captured).format_value(),
        "refunded": picture.money(picture.refunded).format_value(),
    }


@dataclass(frozen=True, slots=True)
class Taken:
    """A stored operation, whether this request stored it, and the order's picture with it."""

    order: Order
    operation: PaymentOperation
    created: bool
    picture: MoneyPicture

    @property
    def execute(self) -> ExecuteOperation | None:
        """The message to send after the commit; None once the worker has taken it on."""
        if self.operation.state is not OperationState.REQUESTED:
            return None
        return ExecuteOperation(self.operation.idempotency_key)

    def to_json(self) -> dict[str, Any]:
        return {
            "orderReference": self.order.reference,
            "operation": operation_json(self.operation),
            "money": money_json(self.picture),
        }


async def take_request(
    session: AsyncSession, reference: str, request: OperationRequest, command_id: str
) -> Taken:
    """Store the operation once per ``command_id`` (no commit); see ``request_operation``.

    Raises OrderNotFound, or the MoneyRuleError that refuses it (CommandReused for another
    request under a used command id), having stored nothing.
    """
    requested = await request_operation(
        session,
        reference=reference,
        kind=request.kind,
        amount=request.amount,
        final=request.final,
        command_id=command_id,
    )
    row = requested.row
    if not requested.created and row.kind is OperationKind.CAPTURE and row.final != request.final:
        raise CommandReused("the command id was used for another operation")
    order = await lock_order(session, order_id=row.order_id)  # locked already by the request
    assert order is not None
    await session.refresh(row)  # created_at, from the database
    picture = picture_of(order, await operations_of(session, order.id))
    return Taken(order, row, requested.created, picture)
