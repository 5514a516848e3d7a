"""The messages commerce backends get when a capture, cancel or refund reaches its outcome.

One message per operation and terminal state, written to the outbox in the transaction that
applies the state, so the state and its announcement commit together. The message id is derived
from the operation's id and state: a replayed report writes nothing new, and a consumer dedupes
on it. Each body carries the order's amounts so far (from the money picture, after the outcome)
and the operation itself (docs/asyncapi.yaml).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import Order
from shared.money import Money
from shared.money_picture import MoneyPicture, Operation
from shared.operation_states import OperationKind, OperationState
from shared.order_store import SCHEMA_VERSION, utcnow, write_outbox_message

# The routing key of each (kind, terminal state) announced; authorize operations are announced
# by the order's own states (order.paid, ...), not here.
ROUTING_KEYS: dict[tuple[OperationKind, OperationState], str] = {
    (OperationKind.CAPTURE, OperationState.SUCCEEDED): "order.captured",
    (OperationKind.CAPTURE, OperationState.FAILED): "order.capture_failed",
    (OperationKind.REFUND, OperationState.SUCCEEDED): "order.refunded",
    (OperationKind.REFUND, OperationState.FAILED): "order.refund_failed",
    (OperationKind.CANCEL, OperationState.SUCCEEDED): "order.cancelled",
    (OperationKind.CANCEL, OperationState.FAILED): "order.cancel_failed",
    # Money may or may not have moved: a person decides (recon review).
    (OperationKind.CAPTURE, OperationState.UNKNOWN): "order.operation_unknown",
    (OperationKind.REFUND, OperationState.UNKNOWN): "order.operation_unknown",
    (OperationKind.CANCEL, OperationState.UNKNOWN): "order.operation_unknown",
}


def operation_message_id(operation_id: int, state: OperationState) -> str:
    """Stable per (operation, state): an outcome is announced at most once."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"recon:operation:{operation_id}:{state.value}"))


def totals(picture: MoneyPicture) -> dict[str, str]:
    """The order's amounts so far, in its currency's minor digits."""

    def written(value: Any) -> str:
        return Money(value, picture.currency).format_value()

    return {
        "currency": picture.currency,
        "authorized": written(picture.authorized),
        "captured": written(picture.captured),
        "refunded": written(picture.refunded),
    }


def operation_json(operation: Operation, currency: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(operation.idempotency_key),  # the id the merchant API answered with
        "sequence": operation.id,
        "kind": operation.kind.value,
        "state": operation.state.value,
        "amount": Money(operation.amount, currency).to_json(),
        "resultCode": operation.result_code,
    }
    if operation.kind is OperationKind.CAPTURE:
        body["final"] = operation.final
    if operation.reason:
        body["reason"] = operation.reason
    return body


def money_message(
    order: Order, picture: MoneyPicture, routing_key: str, message_id: str
) -> dict[str, Any]:
    """What every message about an order's money says: the order and its amounts so far."""
    return {
        "schemaVersion": SCHEMA_VERSION,
        "messageId": message_id,
        "type": routing_key,
        "orderReference": order.reference,
        "customerReference": order.customer_reference,
        "executionId": order.execution_id,
        "status": order.status.value,
        "amount": Money(order.amount_value, order.currency).to_json(),
        "totals": totals(picture),
    }


def operation_message(
    order: Order, picture: MoneyPicture, operation: Operation, routing_key: str, cause: str
) -> dict[str, Any]:
    return {
        **money_message(
            order, picture, routing_key, operation_message_id(operation.id, operation.state)
        ),
        "operation": operation_json(operation, picture.currency),
        "cause": cause,
        "occurredAt": utcnow().isoformat(),
    }


async def announce_outcome(
    session: AsyncSession, order: Order, picture: MoneyPicture, operation_id: int, cause: str
) -> str | None:
    """Write the outbox message for the operation's terminal state; its routing key, if any."""
    operation = picture.operation(operation_id)
    if operation is None:
        return None
    routing_key = ROUTING_KEYS.get((operation.kind, operation.state))
    if routing_key is None:
        return None
    body = operation_message(order, picture, operation, routing_key, cause)
    await write_outbox_message(
        session,
        order_id=order.id,
        routing_key=routing_key,
        message_id=body["messageId"],
        body=body,
    )
    return routing_key
