"""``order.capture``, ``order.cancel`` and ``order.refund`` commands from commerce backends.

The same intake as the merchant API's (``shared.operation_intake``): the operation is stored with
its Payrails idempotency key under the order's row lock, or refused by the money rules with
nothing stored. Each command runs once, by its ``commandId``: its answer
(``order.operation_requested`` with the operation, or ``order.operation_rejected`` with the
rule's code and message) is written to the outbox in the command's transaction, and a repeated
command sends that same answer again (same message id). After the commit, an operation still
``requested`` is handed to the operations queue with ``operation.execute``; a repeat sends it
again, since the first publish may have been lost.
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import metrics
from shared.commands import answer_message_id
from shared.db.models import MerchantCommand, Order, PaymentOperation
from shared.messaging import (
    ROUTING_CANCEL_ORDER,
    ROUTING_CAPTURE_ORDER,
    ROUTING_EXECUTE_OPERATION,
    ROUTING_REFUND_ORDER,
    persistent_properties,
    publish_frames,
)
from shared.money_requests import MoneyRuleError
from shared.operation_intake import ExecuteOperation, OperationCommand, money_json, take_request
from shared.operation_states import OperationKind, OperationState
from shared.operation_store import OrderNotFound, operations_of, picture_of
from shared.order_store import (
    SCHEMA_VERSION,
    republish_outbox_message,
    utcnow,
    write_outbox_message,
)
from worker.deps import Deps

log = structlog.get_logger(__name__)

ROUTING_OPERATION_REQUESTED = "order.operation_requested"
ROUTING_OPERATION_REJECTED = "order.operation_rejected"
KIND_OF_COMMAND: dict[str, OperationKind] = {
    ROUTING_CAPTURE_ORDER: OperationKind.CAPTURE,
    ROUTING_CANCEL_ORDER: OperationKind.CANCEL,
    ROUTING_REFUND_ORDER: OperationKind.REFUND,
}


def _answer(command: OperationCommand, routing_key: str, **extra: Any) -> dict[str, Any]:
    return {
        "schemaVersion": SCHEMA_VERSION,
        "messageId": answer_message_id(command.command_id),
        "type": routing_key,
        "commandId": command.command_id,
        "orderReference": command.reference,
        "kind": command.request.kind.value,
        "occurredAt": utcnow().isoformat(),
        **extra,
    }


async def _money_of(session: AsyncSession, reference: str) -> tuple[int | None, Any]:
    """The order's id and money picture JSON, or (None, None) when there is no such order."""
    order = await session.scalar(select(Order).where(Order.reference == reference))
    if order is None:
        return None, None
    return order.id, money_json(picture_of(order, await operations_of(session, order.id)))


async def _execute(
    session: AsyncSession, command: OperationCommand
) -> tuple[str, ExecuteOperation | None]:
    """Store (or refuse) the operation and write the answer; the outcome label, what to send."""
    kind = command.request.kind.value
    execute: ExecuteOperation | None = None
    try:
        taken = await take_request(session, command.reference, command.request, command.command_id)
    except (OrderNotFound, MoneyRuleError) as exc:
        code = exc.code if isinstance(exc, MoneyRuleError) else "not_found"
        order_id, money = await _money_of(session, command.reference)
        body = _answer(
            command, ROUTING_OPERATION_REJECTED, code=code, message=str(exc), money=money
        )
        routing_key, outcome = ROUTING_OPERATION_REJECTED, "rejected"
        metrics.OPERATIONS_REFUSED.labels("amqp", kind, code).inc()
    else:
        order_id = taken.order.id
        body = _answer(command, ROUTING_OPERATION_REQUESTED, **taken.to_json())
        routing_key = ROUTING_OPERATION_REQUESTED
        outcome = "requested" if taken.created else "repeated"
        execute = taken.execute
        metrics.OPERATIONS_REQUESTED.labels("amqp", kind, outcome).inc()
    message_id = answer_message_id(command.command_id)
    await write_outbox_message(
        session, order_id=order_id, routing_key=routing_key, message_id=message_id, body=body
    )
    session.add(
        MerchantCommand(
            command_id=command.command_id,
            kind=f"order.{kind}",
            order_reference=command.reference,
            answer_message_id=message_id,
        )
    )
    return outcome, execute


async def _still_requested(session: AsyncSession, command_id: str) -> ExecuteOperation | None:
    """The execute message of a repeated command's operation, while the worker has not begun."""
    key = await session.scalar(
        select(PaymentOperation.idempotency_key).where(
            PaymentOperation.command_id == command_id,
            PaymentOperation.state == OperationState.REQUESTED,
        )
    )
    return None if key is None else ExecuteOperation(key)


async def request_from_command(deps: Deps, command: OperationCommand) -> str:
    """Run the command once, or answer a repeat again; then hand the operation over."""
    async with deps.sessions.begin() as session:
        done = await session.scalar(
            select(MerchantCommand.answer_message_id)
            .where(MerchantCommand.command_id == command.command_id)
            .with_for_update()
        )
        if done is not None:
            await republish_outbox_message(session, done)
            outcome, execute = "answered_again", await _still_requested(session, command.command_id)
        else:
            outcome, execute = await _execute(session, command)
    if execute is not None:
        await publish_frames(
            deps.channel,
            deps.names.commands_exchange,
            ROUTING_EXECUTE_OPERATION,
            execute.to_body(),
            persistent_properties(message_id=execute.message_id, headers={}),
            timeout=deps.settings.amqp_publish_timeout_seconds,
        )
    log.info("merchant.operation", kind=command.request.kind.value, outcome=outcome)
    return outcome
