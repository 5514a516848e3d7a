"""Crashes and outages: redelivery after commit, Payrails 5xx, missing orders, database down."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from aio_pika.abc import AbstractRobustConnection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.session import create_engine, create_sessionmaker
from shared.messaging import HDR_REASON
from tests.waiting import sample, wait_until
from tests.worker.conftest import (
    FRICTIONLESS,
    QueueDriver,
    Shop,
    order_status,
    processed,
    processed_since,
    running_worker,
    total_processed,
    transitions_of,
)
from tests.worker.proxy import TcpProxy
from worker.consumer import EventsConsumer, HeldDelivery
from worker.deps import Deps
from worker.events import Outcome

COMPLETED = "executionActionCompleted"


def database_failures() -> float:
    """Database operations the events consumer found unavailable and held for another try."""
    return sample("recon_database_failures_total", consumer="events")


async def reaches(sessions: async_sessionmaker[AsyncSession], reference: str, status: str) -> None:
    async def there() -> bool:
        return await order_status(sessions, reference) == status

    await wait_until(there)


async def test_worker_killed_between_commit_and_ack_has_no_second_effect(
    shop: Shop,
    sandbox_deps: Deps,
    broker: QueueDriver,
    amqp_connection: AbstractRobustConnection,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference, execution_id = await shop.pay(FRICTIONLESS)
    [completed] = await shop.bodies(execution_id, 1)
    await broker.publish_event(completed)
    channel = await amqp_connection.channel(publisher_confirms=False)
    queue = await channel.get_queue(sandbox_deps.names.events_queue)
    async with asyncio.timeout(10):
        while (message := await queue.get(no_ack=False, fail=False)) is None:
            await asyncio.sleep(0.05)
    [(_, result, _)] = await EventsConsumer(sandbox_deps, channel).commit([HeldDelivery(message)])
    assert result is not None
    assert result.outcome is Outcome.RECONCILED
    await channel.close()  # the crash: committed, never acked
    duplicates = processed(COMPLETED, "duplicate")

    async with running_worker(sandbox_deps):

        async def redelivered() -> bool:
            return processed(COMPLETED, "duplicate") >= duplicates + 1

        await wait_until(redelivered)
        messages = await broker.settled_messages_for(sessions, {reference})

    assert len(await transitions_of(sessions, reference)) == 1
    assert [m["_routing_key"] for m in messages] == ["order.paid"]


async def test_repoll_answered_5xx_is_retried_later_then_reconciled(
    shop: Shop,
    sandbox_deps: Deps,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference, execution_id = await shop.pay(FRICTIONLESS)
    [completed] = await shop.bodies(execution_id, 1)
    # More 503s than the client's own bounded retries: the worker must park the event.
    await shop.sandbox.set_faults({"endpoints": {"get_execution": {"error_rate": 1, "times": 4}}})
    retried = processed(COMPLETED, "retried")

    async with running_worker(sandbox_deps):
        await broker.publish_event(completed)
        await reaches(sessions, reference, "paid")

    assert processed(COMPLETED, "retried") >= retried + 1


async def test_event_for_an_order_that_never_appears_is_dead_lettered_after_the_last_tier(
    shop: Shop,
    sandbox_deps: Deps,
    broker: QueueDriver,
) -> None:
    _, execution_id = await shop.pay(FRICTIONLESS, with_order=False)
    [completed] = await shop.bodies(execution_id, 1)

    async with running_worker(sandbox_deps, relay=False):
        await broker.publish_event(completed)
        [dead] = await broker.wait_for(sandbox_deps.names.dead_letters_queue, 1, timeout=20)

    assert dead.headers[HDR_REASON] == "order_not_found"
    assert dead.headers["x-attempt"] == len(sandbox_deps.settings.worker_retry_delays_seconds)
    assert json.loads(dead.body) == completed


@pytest.fixture
async def proxied_deps(sandbox_deps: Deps) -> AsyncIterator[tuple[Deps, TcpProxy]]:
    """Worker dependencies whose database connections go through a proxy the test can cut."""
    target = urlsplit(sandbox_deps.settings.database_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    url = target._replace(netloc=f"{target.username}@127.0.0.1:{proxy.port}").geturl()
    settings = sandbox_deps.settings.model_copy(
        update={"database_url": url, "database_pool_size": 2}
    )
    engine = create_engine(settings)
    deps = dataclasses.replace(
        sandbox_deps, settings=settings, sessions=create_sessionmaker(engine)
    )
    yield deps, proxy
    await proxy.close()
    await engine.dispose()


async def test_database_outage_acks_nothing_loses_nothing_and_resumes(
    shop: Shop,
    proxied_deps: tuple[Deps, TcpProxy],
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    deps, proxy = proxied_deps
    paid = [await shop.pay(FRICTIONLESS) for _ in range(3)]
    bodies = [(await shop.bodies(execution_id, 1))[0] for _, execution_id in paid]
    references = {reference for reference, _ in paid}

    async with running_worker(deps) as consumer:
        await proxy.cut()
        before = total_processed()
        for body in bodies:
            await broker.publish_event(body)

        async def all_held() -> bool:
            return consumer.in_flight == len(bodies)

        await wait_until(all_held)
        failed = database_failures()

        async def attempted_again() -> bool:
            return database_failures() >= failed + 2  # the held batch tried and failed again

        await wait_until(attempted_again)
        assert consumer.in_flight == len(bodies)
        assert total_processed() == before
        assert {await order_status(sessions, r) for r in references} == {"authorizing"}

        await proxy.start()
        await wait_until(processed_since(before, 3), timeout=30)
        messages = await broker.settled_messages_for(sessions, references)

    assert {await order_status(sessions, r) for r in references} == {"paid"}
    assert sorted(m["orderReference"] for m in messages) == sorted(references)


async def test_stopping_during_a_database_outage_requeues_every_held_message(
    shop: Shop,
    proxied_deps: tuple[Deps, TcpProxy],
    broker: QueueDriver,
) -> None:
    deps, proxy = proxied_deps
    _, execution_id = await shop.pay(FRICTIONLESS)
    [body] = await shop.bodies(execution_id, 1)

    async with running_worker(deps, relay=False) as consumer:
        await proxy.cut()
        await broker.publish_event(body)

        async def held() -> bool:
            return consumer.in_flight == 1

        await wait_until(held)

    async def requeued() -> bool:
        return await broker.fetchable(deps.names.events_queue) == 1

    await wait_until(requeued)
