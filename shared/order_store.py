"""Order queries and the one place where an order changes state.

Every path that moves an order (webhook, poll, return page, sweeper, authorize command) calls
``apply_observation`` inside its own ``session.begin()`` block. It takes the row lock, asks the
pure state machine, and writes the order, the transition and the outbox row together, so the
state change and the message for commerce backends commit or roll back as one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared import metrics
from shared.db.models import IdempotencyKey, Order, OrderTransition, OutboxMessage, table_of
from shared.db.session import OUTBOX_CHANNEL
from shared.money import Money
from shared.payment_books import payment_json, record_payment, result_detail
from shared.payrails.payment_record import PaymentRecord
from shared.state_machine import Cause, Observation, OrderStatus, Transition, decide

SCHEMA_VERSION = 1
ORDERS_EXCHANGE = "orders"  # logical name; the relay applies AMQP_NAME_PREFIX


def utcnow() -> datetime:
    return datetime.now(UTC)


async def lock_order(
    session: AsyncSession,
    *,
    order_id: int | None = None,
    reference: str | None = None,
    execution_id: str | None = None,
) -> Order | None:
    """Load one order FOR UPDATE, so its state machine runs serially across workers."""
    query = select(Order).with_for_update()
    if order_id is not None:
        query = query.where(Order.id == order_id)
    elif execution_id is not None:
        query = query.where(Order.execution_id == execution_id)
    elif reference is not None:
        query = query.where(Order.reference == reference)
    else:
        raise ValueError("lock_order needs an order id, an execution id or a reference")
    return (await session.execute(query)).scalar_one_or_none()


async def ensure_idempotency_key(session: AsyncSession, order_id: int, operation: str) -> uuid.UUID:
    """The stored key for (order, operation), creating a UUIDv4 the first time."""
    stmt = (
        insert(IdempotencyKey)
        .values(order_id=order_id, operation=operation, key=uuid.uuid4())
        .on_conflict_do_nothing(index_elements=["order_id", "operation"])
    )
    await session.execute(stmt)
    key = await session.scalar(
        select(IdempotencyKey.key).where(
            IdempotencyKey.order_id == order_id, IdempotencyKey.operation == operation
        )
    )
    assert key is not None  # inserted or already there, inside this transaction
    return key


def order_money(order: Order) -> Money:
    return Money(order.amount_value, order.currency)


def message_body(
    order: Order,
    transition: Transition,
    message_id: str,
    cause: Cause,
    payment: PaymentRecord | None = None,
) -> dict[str, Any]:
    """The JSON body commerce backends receive (see docs/asyncapi.yaml)."""
    body: dict[str, Any] = {
        "schemaVersion": SCHEMA_VERSION,
        "messageId": message_id,
        "type": transition.routing_key,
        "orderReference": order.reference,
        "customerReference": order.customer_reference,
        "executionId": order.execution_id,
        "attempt": order.attempt or 1,  # None only on a row not inserted yet
        "status": transition.to_status.value,
        "previousStatus": transition.from_status.value,
        "amount": order_money(order).to_json(),
        "cause": cause.value,
        "occurredAt": utcnow().isoformat(),
    }
    if transition.threeds_url:
        body["redirectUrl"] = transition.threeds_url
    if transition.reason:
        body["reason"] = transition.reason
    books = payment_json(order, payment)
    if books is not None:
        body["payment"] = books
    return body


def outbox_message_id(order: Order, status: OrderStatus) -> str:
    """Stable per (order, attempt, status): a state is announced at most once per payment
    attempt, and consumers can dedupe. The first attempt keeps the name it always had."""
    name = f"recon:order:{order.reference}:{status.value}"
    if (order.attempt or 1) > 1:  # None only on a row not inserted yet
        name += f":attempt:{order.attempt}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


async def write_outbox_message(
    session: AsyncSession,
    *,
    order_id: int | None,
    routing_key: str,
    message_id: str,
    body: dict[str, Any],
) -> None:
    """One message for commerce backends outside a transition (a command's answer). No commit.

    ``order_id`` is None for an answer about an order that does not exist."""
    await session.execute(
        insert(table_of(OutboxMessage)).on_conflict_do_nothing(index_elements=["message_id"]),
        [
            {
                "message_id": message_id,
                "exchange": ORDERS_EXCHANGE,
                "routing_key": routing_key,
                "body": body,
                "order_id": order_id,
            }
        ],
    )
    await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": OUTBOX_CHANNEL})


async def republish_outbox_message(session: AsyncSession, message_id: str) -> None:
    """Send a message again with its own id (consumers dedupe on it). No commit."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.message_id == message_id)
        .values(published_at=None)
    )
    await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": OUTBOX_CHANNEL})


async def count_orders_by_status(session: AsyncSession) -> dict[OrderStatus, int]:
    rows = await session.execute(select(Order.status, func.count()).group_by(Order.status))
    return {row[0]: row[1] for row in rows}


@dataclass(frozen=True, slots=True)
class Change:
    """One observation of one locked order, for ``apply_observations``."""

    order: Order
    observed: Observation
    event_id: str | None = None
    webhook_received_at: datetime | None = None
    detail: Mapping[str, Any] | None = None
    execution_id: str | None = None  # the observed execution; binds an order that has none yet


def _bind(change: Change) -> None:
    """An order matched by merchantReference learns its execution id (before messages are built)."""
    if change.execution_id and change.order.execution_id is None:
        change.order.execution_id = change.execution_id


def _advance(order: Order, transition: Transition) -> None:
    order.status = transition.to_status
    order.threeds_url = transition.threeds_url
    if transition.reason:
        order.failure_reason = transition.reason
    order.updated_at = utcnow()
    order.version += 1


async def apply_observation(
    session: AsyncSession,
    order: Order,
    observed: Observation,
    cause: Cause,
    *,
    event_id: str | None = None,
    webhook_received_at: datetime | None = None,
    detail: Mapping[str, Any] | None = None,
) -> Transition | None:
    """Move a locked order if ``observed`` is newer; write transition and outbox. No commit."""
    change = Change(order, observed, event_id, webhook_received_at, detail)
    (transition,) = await apply_observations(session, [change], cause)
    return transition


async def apply_observations(
    session: AsyncSession, changes: Sequence[Change], cause: Cause
) -> list[Transition | None]:
    """``apply_observation`` for many locked orders, with a handful of statements in all.

    The same rules row by row (changes to one order apply in sequence, each seeing the state
    the previous one left), then one write for the whole batch, which is what lets the events
    consumer reconcile a batch per transaction. No commit.
    """
    transitions: list[Transition | None] = []
    decided: list[tuple[Change, Transition]] = []
    for change in changes:
        _bind(change)
        transition = decide(change.order.status, change.observed)
        transitions.append(transition)
        if transition is not None:
            _advance(change.order, transition)
            record_payment(change.order, change.observed.payment)
            decided.append((change, transition))
    await _write_transitions(session, decided, cause)
    return transitions


async def record_transition(
    session: AsyncSession,
    order: Order,
    transition: Transition,
    cause: Cause,
    *,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Write a transition decided elsewhere (a person's review verdict). No commit."""
    _advance(order, transition)
    observed = Observation(transition.to_status, transition.threeds_url, transition.reason)
    await _write_transitions(session, [(Change(order, observed, detail=detail), transition)], cause)


async def _write_transitions(
    session: AsyncSession, decided: Sequence[tuple[Change, Transition]], cause: Cause
) -> None:
    """The history rows, outbox rows and NOTIFY for already-advanced orders, once per batch."""
    history: list[dict[str, Any]] = []
    outbox: list[dict[str, Any]] = []
    for change, transition in decided:
        order = change.order
        history.append(
            {
                "order_id": order.id,
                "from_status": transition.from_status.value,
                "to_status": transition.to_status.value,
                "cause": cause.value,
                "event_id": change.event_id,
                "detail": {**(change.detail or {}), **result_detail(change.observed.payment)},
            }
        )
        if transition.routing_key is not None:
            message_id = outbox_message_id(order, transition.to_status)
            outbox.append(
                {
                    "message_id": message_id,
                    "exchange": ORDERS_EXCHANGE,
                    "routing_key": transition.routing_key,
                    "body": message_body(
                        order, transition, message_id, cause, change.observed.payment
                    ),
                    "order_id": order.id,
                    "webhook_received_at": change.webhook_received_at,
                }
            )
    await session.flush()  # the order updates, batched by the unit of work
    if history:
        # Core inserts on the tables: the same executemany, without the ORM's per-row work.
        await session.execute(insert(table_of(OrderTransition)), history)
    if outbox:
        await session.execute(
            insert(table_of(OutboxMessage)).on_conflict_do_nothing(index_elements=["message_id"]),
            outbox,
        )
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": OUTBOX_CHANNEL})
    for _, transition in decided:
        metrics.ORDER_TRANSITIONS.labels(
            transition.from_status.value, transition.to_status.value, cause.value
        ).inc()
