"""worker.outbox: rows to exchange ``orders``, confirmed, marked, once, woken by NOTIFY."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta

from aio_pika import DeliveryMode
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import OutboxMessage
from shared.db.session import OUTBOX_CHANNEL
from shared.order_store import apply_observation, lock_order
from shared.state_machine import Cause, Observation, OrderStatus
from tests.waiting import sample, wait_until
from tests.worker.conftest import QueueDriver, insert_order
from worker.deps import Deps
from worker.outbox import OutboxRelay


async def paid_order(
    sessions: async_sessionmaker[AsyncSession], received_at: datetime | None = None
) -> str:
    """An order moved to paid through apply_observation: one outbox row, one NOTIFY."""
    order = await insert_order(sessions, execution_id=str(uuid.uuid4()))
    async with sessions.begin() as session:
        locked = await lock_order(session, order_id=order.id)
        assert locked is not None
        await apply_observation(
            session,
            locked,
            Observation(OrderStatus.PAID),
            Cause.WEBHOOK,
            webhook_received_at=received_at,
        )
    return order.reference


async def published_at(
    sessions: async_sessionmaker[AsyncSession], reference: str
) -> datetime | None:
    async with sessions() as session:
        return await session.scalar(
            select(OutboxMessage.published_at).where(
                OutboxMessage.body["orderReference"].astext == reference
            )
        )


async def listening_backends(sessions: async_sessionmaker[AsyncSession]) -> set[int]:
    """Backends whose LISTEN on the outbox channel is in place (then idle, or checking it lives)."""
    async with sessions() as session:
        rows = await session.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND query IN (:listen, 'SELECT 1')"
            ),
            {"listen": f"LISTEN {OUTBOX_CHANNEL}"},
        )
        return {pid for (pid,) in rows}


async def test_relay_publishes_the_row_with_its_message_id_and_marks_it(
    deps: Deps, broker: QueueDriver, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference = await paid_order(sessions)

    while await OutboxRelay(deps).relay_once():
        pass

    [body] = await broker.messages_for({reference}, 1)
    assert body["_routing_key"] == "order.paid"
    assert body["status"] == "paid"
    assert body["amount"] == {"value": "12.50", "currency": "EUR"}
    assert body["_message_id"] == body["messageId"]
    assert await published_at(sessions, reference) is not None


async def test_two_relays_at_once_publish_each_row_once(
    deps: Deps, broker: QueueDriver, sessions: async_sessionmaker[AsyncSession]
) -> None:
    references = {await paid_order(sessions) for _ in range(20)}
    small = dataclasses.replace(
        deps, settings=deps.settings.model_copy(update={"outbox_batch_size": 3})
    )

    async def drain(relay: OutboxRelay) -> None:
        while await relay.relay_once():
            pass

    await asyncio.gather(drain(OutboxRelay(small)), drain(OutboxRelay(small)))

    bodies = await broker.settled_messages_for(deps.sessions, references)
    assert sorted(b["orderReference"] for b in bodies) == sorted(references)


async def test_notify_wakes_the_relay_long_before_its_poll(
    deps: Deps, broker: QueueDriver, sessions: async_sessionmaker[AsyncSession]
) -> None:
    slow_poll = deps.settings.model_copy(update={"outbox_poll_seconds": 3600.0})
    relay = OutboxRelay(dataclasses.replace(deps, settings=slow_poll))
    listening_before = await listening_backends(sessions)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:

        async def relay_listens() -> bool:
            return bool(await listening_backends(sessions) - listening_before)

        await wait_until(relay_listens, timeout=10)
        reference = await paid_order(sessions)
        [body] = await broker.messages_for({reference}, 1, timeout=20)
        assert body["status"] == "paid"
    finally:
        stop.set()
        await task


async def test_paid_message_observes_webhook_to_paid_latency(
    deps: Deps, broker: QueueDriver, sessions: async_sessionmaker[AsyncSession]
) -> None:
    before = sample("recon_webhook_to_paid_seconds_count")
    reference = await paid_order(sessions, received_at=datetime.now(UTC) - timedelta(seconds=1))

    while await OutboxRelay(deps).relay_once():
        pass

    after = sample("recon_webhook_to_paid_seconds_count")
    assert after >= before + 1
    await broker.messages_for({reference}, 1)


async def test_nacked_publish_leaves_the_row_unpublished_for_the_next_pass(
    deps: Deps, broker: QueueDriver, sessions: async_sessionmaker[AsyncSession]
) -> None:
    full = await broker.channel.declare_queue(
        f"{deps.names.prefix}test.full",
        arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
    )
    await full.bind(deps.names.orders_exchange, routing_key="#")
    reference = await paid_order(sessions)
    try:
        assert await OutboxRelay(deps).relay_once() == 0
        assert await published_at(sessions, reference) is None
    finally:
        await full.delete(if_unused=False, if_empty=False)

    while await OutboxRelay(deps).relay_once():
        pass

    assert await published_at(sessions, reference) is not None
    [body] = await broker.messages_for({reference}, 1)
    assert body["status"] == "paid"


async def test_relayed_message_is_persistent_json_with_the_schema_header(
    deps: Deps, broker: QueueDriver, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference = await paid_order(sessions)

    while await OutboxRelay(deps).relay_once():
        pass

    [message] = [
        m
        for m in await broker.drain(broker.orders.name)
        if json.loads(m.body)["orderReference"] == reference
    ]
    assert message.delivery_mode == DeliveryMode.PERSISTENT
    assert message.content_type == "application/json"
    assert message.headers["x-schema-version"] == 1
