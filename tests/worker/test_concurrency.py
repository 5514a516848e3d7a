"""One worker processes webhook events concurrently, within the prefetch the broker applies."""

from __future__ import annotations

import dataclasses

import pytest
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import Order
from tests.waiting import wait_until
from tests.worker.conftest import (
    FRICTIONLESS,
    QueueDriver,
    Shop,
    order_status,
    running_worker,
)
from worker.deps import Deps

PREFETCH = 3
BEYOND_PREFETCH = 2


async def lock_waiters(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Sessions of this test database now waiting for a lock held by another transaction."""
    async with sessions() as session:
        count = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return int(count or 0)


async def reaches(sessions: async_sessionmaker[AsyncSession], reference: str, status: str) -> None:
    async def there() -> bool:
        return await order_status(sessions, reference) == status

    await wait_until(there)


@pytest.fixture
def two_single_event_batches(sandbox_deps: Deps) -> Deps:
    """A worker whose batches hold one event each, with two batch loops."""
    settings = sandbox_deps.settings.model_copy(
        update={"worker_event_batch_size": 1, "worker_event_batches": 2}
    )
    return dataclasses.replace(sandbox_deps, settings=settings)


@pytest.fixture
def small_prefetch(sandbox_deps: Deps) -> Deps:
    """A worker whose channel may hold only a few unacked events."""
    settings = sandbox_deps.settings.model_copy(update={"worker_prefetch": PREFETCH})
    return dataclasses.replace(sandbox_deps, settings=settings)


async def test_event_for_another_order_is_reconciled_while_an_earlier_event_waits_for_its_lock(
    shop: Shop,
    two_single_event_batches: Deps,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    (blocked, blocked_id), (free, free_id) = [await shop.pay(FRICTIONLESS) for _ in range(2)]
    [blocked_body] = await shop.bodies(blocked_id, 1)
    [free_body] = await shop.bodies(free_id, 1)

    async with running_worker(two_single_event_batches):
        async with sessions.begin() as blocker:
            await blocker.execute(select(Order).where(Order.reference == blocked).with_for_update())
            await broker.publish_event(blocked_body)

            async def blocked_event_waits() -> bool:
                return await lock_waiters(sessions) == 1

            await wait_until(blocked_event_waits)
            await broker.publish_event(free_body)

            await reaches(sessions, free, "paid")
            [free_message] = await broker.messages_for({free}, 1)
            assert free_message["_routing_key"] == "order.paid"
            assert await order_status(sessions, blocked) == "authorizing"
            assert await lock_waiters(sessions) == 1

        await reaches(sessions, blocked, "paid")
        rest = await broker.settled_messages_for(sessions, {blocked, free})

    assert [(m["orderReference"], m["_routing_key"]) for m in rest] == [(blocked, "order.paid")]


async def test_worker_holds_only_the_configured_prefetch_and_the_rest_stay_in_the_queue(
    shop: Shop,
    small_prefetch: Deps,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    paid = [await shop.pay(FRICTIONLESS) for _ in range(PREFETCH + BEYOND_PREFETCH)]
    bodies = [(await shop.bodies(execution_id, 1))[0] for _, execution_id in paid]
    references = [reference for reference, _ in paid]
    events_queue = small_prefetch.names.events_queue

    async with sessions() as blocker:
        await blocker.execute(
            select(Order).where(Order.reference.in_(references)).with_for_update()
        )
        for body in bodies:
            await broker.publish_event(body)

        async with running_worker(small_prefetch, relay=False) as consumer:

            async def prefetch_taken() -> bool:
                return consumer.in_flight == PREFETCH

            await wait_until(prefetch_taken)
            queue = await broker.channel.get_queue(events_queue, ensure=False)
            held_back: list[AbstractIncomingMessage] = []
            while (message := await queue.get(fail=False)) is not None:
                held_back.append(message)
            assert len(held_back) == BEYOND_PREFETCH
            assert consumer.in_flight == PREFETCH
            for message in held_back:
                await message.nack(requeue=True)

            await blocker.commit()
            for reference in references:
                await reaches(sessions, reference, "paid")
