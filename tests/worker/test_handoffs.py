"""Dead-letter paths, hand-offs the broker refuses, and a batch the database keeps failing."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import Order
from shared.db.session import create_engine, create_sessionmaker
from shared.messaging import HDR_REASON, declare_topology
from tests.waiting import sample, wait_until
from tests.worker.conftest import (
    FRICTIONLESS,
    QueueDriver,
    Shop,
    insert_order,
    order_status,
    running_worker,
    webhook_body,
)
from worker.deps import Deps

COMPLETED = "executionActionCompleted"


async def test_execution_payrails_refuses_to_return_is_dead_lettered_as_rejected(
    sandbox_deps: Deps, broker: QueueDriver, sessions: async_sessionmaker[AsyncSession]
) -> None:
    order = await insert_order(sessions, execution_id=str(uuid.uuid4()))
    assert order.execution_id is not None
    body = webhook_body(COMPLETED, order.execution_id, order.reference)

    async with running_worker(sandbox_deps, relay=False):
        await broker.publish_event(body)
        [dead] = await broker.wait_for(sandbox_deps.names.dead_letters_queue, 1)

    assert dead.headers[HDR_REASON] == "payrails_rejected"
    assert dead.headers["x-attempt"] == 0


async def test_reconciled_event_naming_no_execution_is_dead_lettered(
    deps: Deps, broker: QueueDriver
) -> None:
    body = webhook_body(COMPLETED, "unused", "ord_no_execution")
    del body["details"]["execution"]["id"]

    async with running_worker(deps, relay=False):
        await broker.publish_event(body)
        [dead] = await broker.wait_for(deps.names.dead_letters_queue, 1)

    assert dead.headers[HDR_REASON] == "no_execution_id"


async def test_execution_of_another_order_is_dead_lettered_as_a_mismatch(
    shop: Shop,
    sandbox_deps: Deps,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    _, execution_id = await shop.pay(FRICTIONLESS, with_order=False)
    victim = await insert_order(sessions, execution_id=None)
    forged = webhook_body(COMPLETED, execution_id, victim.reference)

    async with running_worker(sandbox_deps, relay=False):
        await broker.publish_event(forged)
        [dead] = await broker.wait_for(sandbox_deps.names.dead_letters_queue, 1)

    assert dead.headers[HDR_REASON] == "execution_mismatch"
    assert await order_status(sessions, victim.reference) == "authorizing"


async def test_refused_dead_letter_hand_off_is_held_and_retried_until_it_succeeds(
    deps: Deps, broker: QueueDriver
) -> None:
    returned = {"exchange": "(default)", "outcome": "returned"}
    await broker.channel.queue_delete(deps.names.dead_letters_queue)
    before = sample("recon_broker_publishes_total", **returned)

    async with running_worker(deps, relay=False) as consumer:
        await broker.publish_event(b"poison")

        async def refused_twice() -> bool:
            return sample("recon_broker_publishes_total", **returned) >= before + 2

        await wait_until(refused_twice)
        assert consumer.in_flight == 1
        assert await broker.ready(deps.names.events_queue) == 0
        await declare_topology(broker.channel, deps.settings)
        [dead] = await broker.wait_for(deps.names.dead_letters_queue, 1)

    assert dead.body == b"poison"
    assert await broker.ready(deps.names.events_queue) == 0


async def test_refused_hand_off_is_requeued_on_shutdown(deps: Deps, broker: QueueDriver) -> None:
    returned = {"exchange": "(default)", "outcome": "returned"}
    await broker.channel.queue_delete(deps.names.dead_letters_queue)
    before = sample("recon_broker_publishes_total", **returned)

    async with running_worker(deps, relay=False):
        await broker.publish_event(b"poison")

        async def refused() -> bool:
            return sample("recon_broker_publishes_total", **returned) >= before + 1

        await wait_until(refused)

    async def requeued() -> bool:
        return await broker.fetchable(deps.names.events_queue) == 1

    await wait_until(requeued)


@pytest.fixture
async def impatient_deps(sandbox_deps: Deps) -> AsyncIterator[Deps]:
    """Worker dependencies whose sessions give up on a row lock after 100 ms."""
    engine = create_engine(sandbox_deps.settings)

    def short_lock_timeout(connection: Any, _: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("SET lock_timeout = '100ms'")
        cursor.close()
        connection.commit()  # a SET inside a transaction that rolls back would be undone

    event.listen(engine.sync_engine, "connect", short_lock_timeout)
    yield dataclasses.replace(sandbox_deps, sessions=create_sessionmaker(engine))
    await engine.dispose()


async def test_message_that_keeps_failing_while_the_database_answers_goes_to_the_delay_tiers(
    shop: Shop,
    impatient_deps: Deps,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    (stuck, stuck_id), (free, free_id) = [await shop.pay(FRICTIONLESS) for _ in range(2)]
    bodies = [(await shop.bodies(e, 1))[0] for e in (stuck_id, free_id)]
    labels = {"event": COMPLETED, "outcome": "retried"}
    retried = sample("recon_events_processed_total", **labels)

    async with running_worker(impatient_deps, relay=False):
        async with sessions.begin() as blocker:
            await blocker.execute(select(Order).where(Order.reference == stuck).with_for_update())
            for body in bodies:
                await broker.publish_event(body)

            async def parked() -> bool:
                return sample("recon_events_processed_total", **labels) >= retried + 1

            await wait_until(parked)
            assert await order_status(sessions, free) == "paid"
            assert await order_status(sessions, stuck) == "authorizing"

        async def paid() -> bool:
            return await order_status(sessions, stuck) == "paid"

        await wait_until(paid)
