"""A database that failed over: "you are not talking to the primary" is held, never poison."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.waiting import wait_until
from tests.worker.conftest import (
    FRICTIONLESS,
    QueueDriver,
    ReadOnlyDatabase,
    Shop,
    order_status,
    processed_since,
    running_worker,
    total_processed,
)
from tests.worker.test_failures import database_failures


async def test_event_meeting_a_read_only_database_is_held_then_reconciled_not_dead_lettered(
    shop: Shop,
    read_only_database: ReadOnlyDatabase,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference, execution_id = await shop.pay(FRICTIONLESS)
    [completed] = await shop.bodies(execution_id, 1)
    deps = read_only_database.read_only()

    async with running_worker(deps) as consumer:
        before = total_processed()
        failed = database_failures()
        await broker.publish_event(completed)

        async def held_and_tried_again() -> bool:
            return consumer.in_flight == 1 and database_failures() >= failed + 2

        await wait_until(held_and_tried_again)
        assert total_processed() == before
        assert await broker.fetchable(deps.names.dead_letters_queue) == 0

        read_only_database.writable()  # the failover is over: new connections may write
        await wait_until(processed_since(before, 1), timeout=30)
        [message] = await broker.settled_messages_for(sessions, {reference})

    assert await order_status(sessions, reference) == "paid"
    assert message["orderReference"] == reference
    assert await broker.fetchable(deps.names.dead_letters_queue) == 0
