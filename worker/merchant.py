"""Commands from commerce backends that speak RabbitMQ: ``order.create`` here, and
``order.capture``, ``order.cancel`` and ``order.refund`` (``worker.merchant_operations``), all on
the merchant commands queue, told apart by their routing key.

The same rule as ``POST /merchant/orders`` (``shared.merchant_orders``): the same reference with
the same terms is the same order; other terms are refused. Each command is executed once, by its
own ``commandId``: its answer (``order.created`` with a checkout session for the shopper, or
``order.rejected``) is written to the outbox in the command's transaction, and a repeated command
sends that same answer again (same message id) instead of running twice.
"""

from __future__ import annotations

from typing import Any

import structlog
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared import metrics
from shared.checkout_sessions import is_payable, issue_session
from shared.commands import CreateOrderCommand, answer_message_id
from shared.db.failover import MAYBE_TRANSIENT, is_transient
from shared.db.models import MerchantCommand, Order
from shared.errors import InvalidPayload, PublishError
from shared.merchant_orders import OrderTermsConflict, create_order
from shared.operation_intake import OperationCommand
from shared.order_store import (
    SCHEMA_VERSION,
    order_money,
    republish_outbox_message,
    utcnow,
    write_outbox_message,
)
from worker.deps import Deps
from worker.merchant_operations import KIND_OF_COMMAND, request_from_command
from worker.retry import dead_letter, retry_later, routing_key_of

log = structlog.get_logger(__name__)

KIND_CREATE = "order.create"
ROUTING_CREATED = "order.created"
ROUTING_REJECTED = "order.rejected"


def _answer(
    command: CreateOrderCommand, order: Order, routing_key: str, **extra: Any
) -> dict[str, Any]:
    return {
        "schemaVersion": SCHEMA_VERSION,
        "messageId": answer_message_id(command.command_id),
        "type": routing_key,
        "commandId": command.command_id,
        "orderReference": order.reference,
        "customerReference": order.customer_reference,
        "status": order.status,
        "amount": order_money(order).to_json(),
        "occurredAt": utcnow().isoformat(),
        **extra,
    }


async def _execute(session: AsyncSession, deps: Deps, command: CreateOrderCommand) -> str:
    """Create (or match) the order and write the answer; the outcome's metric label."""
    try:
        result = await create_order(session, command.terms)
    except OrderTermsConflict as exc:
        order = exc.order  # locked by create_order, in this transaction
        body = _answer(command, order, ROUTING_REJECTED, reason="order_conflict", fields=exc.fields)
        routing_key, outcome = ROUTING_REJECTED, "conflict"
    else:
        order = result.order
        settings = deps.settings
        issued = (
            await issue_session(session, order, settings.checkout_session_ttl_seconds)
            if is_payable(order)
            else None
        )
        checkout = issued.to_json(settings.public_base_url) if issued else None
        body = _answer(command, order, ROUTING_CREATED, checkoutSession=checkout)
        routing_key, outcome = ROUTING_CREATED, "created" if result.created else "repeated"
    message_id = answer_message_id(command.command_id)
    await write_outbox_message(
        session, order_id=order.id, routing_key=routing_key, message_id=message_id, body=body
    )
    return outcome


async def _claim(session: AsyncSession, command: CreateOrderCommand) -> bool:
    """Record the command id in this transaction; False when it was recorded before.

    The insert comes first so that a repeat delivered while the command still runs (a backend
    that publishes again, two workers) waits on the command id's row and then answers again,
    instead of running the command a second time and failing on the id at commit.
    """
    claimed = await session.scalar(
        insert(MerchantCommand)
        .values(
            command_id=command.command_id,
            kind=KIND_CREATE,
            order_reference=command.terms.reference,
            answer_message_id=answer_message_id(command.command_id),
        )
        .on_conflict_do_nothing(index_elements=["command_id"])
        .returning(MerchantCommand.command_id)
    )
    return claimed is not None


async def create_order_from_command(deps: Deps, command: CreateOrderCommand) -> str:
    """Run the command once, or answer a repeat again; the outcome, committed."""
    async with deps.sessions.begin() as session:
        if await _claim(session, command):
            return await _execute(session, deps, command)
        done = await session.scalar(
            select(MerchantCommand.answer_message_id).where(
                MerchantCommand.command_id == command.command_id
            )
        )
        assert done is not None  # claimed by a committed transaction
        await republish_outbox_message(session, done)
        return "answered_again"


def _parse(message: AbstractIncomingMessage) -> CreateOrderCommand | OperationCommand:
    """The command its routing key names; InvalidPayload for a bad body or an unknown key."""
    routing_key = routing_key_of(message)  # a retried command comes back routed by queue name
    kind = KIND_OF_COMMAND.get(routing_key)
    if kind is not None:
        return OperationCommand.from_body(message.body, message.message_id, kind)
    if routing_key not in (KIND_CREATE, ""):
        raise InvalidPayload(f"no merchant command is routed by {routing_key!r}")
    return CreateOrderCommand.from_body(message.body, message.message_id)


async def _run(deps: Deps, command: CreateOrderCommand | OperationCommand) -> str:
    if isinstance(command, OperationCommand):
        return await request_from_command(deps, command)
    return await create_order_from_command(deps, command)


def _reference(command: CreateOrderCommand | OperationCommand) -> str:
    return command.reference if isinstance(command, OperationCommand) else command.terms.reference


async def _process(message: AbstractIncomingMessage, deps: Deps) -> str:
    """One command to one outcome; retry and dead-letter hand-offs are confirmed publishes."""
    queue = deps.names.merchant_commands_queue
    try:
        command = _parse(message)
    except InvalidPayload as exc:
        log.warning("merchant.command_invalid", error=str(exc))
        await dead_letter(message, deps, source_queue=queue, reason="invalid_payload")
        return "invalid"
    with structlog.contextvars.bound_contextvars(
        command_id=command.command_id, order_reference=_reference(command)
    ):
        try:
            return await _run(deps, command)
        except MAYBE_TRANSIENT as exc:
            if not is_transient(exc):
                raise
            log.warning("merchant.transient_failure", error=type(exc).__name__)
            return await retry_later(message, deps, source_queue=queue, reason="transient")


async def handle_merchant_command(message: AbstractIncomingMessage, deps: Deps) -> None:
    """Consume one command; ack only after its order and answer are committed."""
    async with message.process(requeue=False, ignore_processed=True):
        try:
            outcome = await _process(message, deps)
        except PublishError:
            log.warning("merchant.handoff_failed")
            await message.nack(requeue=True)
            return
        await message.ack()
        if message.routing_key not in KIND_OF_COMMAND:
            metrics.MERCHANT_ORDERS.labels("amqp", outcome).inc()
        log.info("merchant.command_done", outcome=outcome)
