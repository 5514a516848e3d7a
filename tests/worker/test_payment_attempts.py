"""Webhooks of an order's earlier payment attempt, against the real database: no change."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import Order, OutboxMessage
from shared.order_store import lock_order
from shared.payment_attempts import start_new_attempt
from tests.worker.conftest import insert_order, order_status
from tests.worker.test_reconcile_batch import delivery, execution, run
from worker.events import Outcome

DECLINED = ("created", "authorizeRequested", "authorizeFailed")
PAID = ("created", "authorizeRequested", "authorizeSuccessful")


async def next_attempt(
    sessions: async_sessionmaker[AsyncSession], reference: str, execution_id: str | None
) -> None:
    """The shopper's next card: a new attempt, bound to ``execution_id`` when it is given."""
    async with sessions.begin() as session:
        order = await lock_order(session, reference=reference)
        assert order is not None
        assert await start_new_attempt(session, order) is not None
    if execution_id is not None:
        async with sessions.begin() as session:
            await session.execute(
                update(Order).where(Order.reference == reference).values(execution_id=execution_id)
            )


async def messages_of(
    sessions: async_sessionmaker[AsyncSession], reference: str
) -> list[tuple[str, int]]:
    async with sessions() as session:
        rows = await session.scalars(
            select(OutboxMessage)
            .join(Order, Order.id == OutboxMessage.order_id)
            .where(Order.reference == reference)
            .order_by(OutboxMessage.id)
        )
        return [(m.routing_key, m.body["attempt"]) for m in rows]


async def test_a_late_webhook_of_the_declined_attempt_leaves_the_paid_order_paid(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    order = await insert_order(sessions, execution_id=first)
    reference = order.reference
    declined = execution(first, reference, *DECLINED)
    first_report = delivery("executionActionCompleted", first, reference, declined)
    assert await run(sessions, first_report) == [Outcome.RECONCILED]
    await next_attempt(sessions, reference, second)
    paid = execution(second, reference, *PAID)
    await run(sessions, delivery("executionActionCompleted", second, reference, paid))
    assert await order_status(sessions, reference) == "paid"

    # The first attempt's webhook again (a new event id), even re-polled as a success.
    late = [
        delivery("executionActionCompleted", first, reference, declined),
        delivery("executionActionCompleted", first, reference, execution(first, reference, *PAID)),
    ]
    assert await run(sessions, *late) == [Outcome.IGNORED, Outcome.IGNORED]
    assert await order_status(sessions, reference) == "paid"
    assert await messages_of(sessions, reference) == [
        ("order.payment_failed", 1),
        ("order.paid", 2),
    ]


async def test_a_late_webhook_between_attempts_does_not_bind_the_old_execution(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The order waits for its next execution: the old one is not taken by its reference."""
    first = str(uuid.uuid4())
    order = await insert_order(sessions, execution_id=first)
    reference = order.reference
    declined = execution(first, reference, *DECLINED)
    await run(sessions, delivery("executionActionCompleted", first, reference, declined))
    await next_attempt(sessions, reference, None)

    late = delivery("executionActionCompleted", first, reference, declined)
    assert await run(sessions, late) == [Outcome.IGNORED]
    async with sessions() as session:
        row = await session.scalar(select(Order).where(Order.reference == reference))
    assert row is not None
    assert (row.status, row.attempt, row.execution_id) == ("created", 2, None)
    assert await messages_of(sessions, reference) == [("order.payment_failed", 1)]


async def test_only_a_declined_order_starts_another_attempt(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    order = await insert_order(sessions, execution_id=str(uuid.uuid4()), status="paid")
    async with sessions.begin() as session:
        locked = await lock_order(session, reference=order.reference)
        assert locked is not None
        assert await start_new_attempt(session, locked) is None
        assert (locked.status, locked.attempt) == ("paid", 1)
