"""Worker fixtures: orders in the database, a queue bound to ``orders``, and helpers to publish."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aio_pika
import aiohttp
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sandbox.control_client import SandboxHandle
from shared.db.models import Order, OrderTransition, OutboxMessage
from shared.db.session import create_engine, create_sessionmaker
from shared.events import derive_event_id
from shared.messaging import (
    HDR_EVENT_ID,
    HDR_EVENT_NAME,
    HDR_RECEIVED_AT,
    Names,
    connect_robust,
    open_channel,
)
from shared.money import Money
from shared.payrails.client import PayrailsClient
from tests.conftest import ServiceUrls
from tests.read_only import ReadOnlySwitch
from tests.settings import Settings
from tests.waiting import sample, wait_until
from worker.consumer import EventsConsumer
from worker.deps import Deps
from worker.outbox import OutboxRelay


def new_reference() -> str:
    return f"ord_{uuid.uuid4().hex[:16]}"


async def insert_order(
    sessions: async_sessionmaker[AsyncSession],
    *,
    execution_id: str | None,
    reference: str | None = None,
    status: str = "authorizing",
    amount: str = "12.50",
    currency: str = "EUR",
) -> Order:
    """An order row as the checkout leaves it after authorize was requested."""
    order = Order(
        reference=reference or new_reference(),
        customer_reference="cust_1",
        amount_value=Decimal(amount),
        currency=currency,
        status=status,
        execution_id=execution_id,
    )
    async with sessions.begin() as session:
        session.add(order)
    return order


async def order_status(sessions: async_sessionmaker[AsyncSession], reference: str) -> str:
    async with sessions() as session:
        status = await session.scalar(select(Order.status).where(Order.reference == reference))
    assert status is not None
    return status


async def transitions_of(
    sessions: async_sessionmaker[AsyncSession], reference: str
) -> list[OrderTransition]:
    async with sessions() as session:
        rows = await session.scalars(
            select(OrderTransition)
            .join(Order, Order.id == OrderTransition.order_id)
            .where(Order.reference == reference)
            .order_by(OrderTransition.id)
        )
        return list(rows)


async def outbox_count(sessions: async_sessionmaker[AsyncSession], reference: str) -> int:
    async with sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .join(Order, Order.id == OutboxMessage.order_id)
            .where(Order.reference == reference)
        )
    return int(count or 0)


async def unpublished_count(
    sessions: async_sessionmaker[AsyncSession], references: Collection[str]
) -> int:
    async with sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .join(Order, Order.id == OutboxMessage.order_id)
            .where(Order.reference.in_(list(references)), OutboxMessage.published_at.is_(None))
        )
    return int(count or 0)


def webhook_body(
    event: str,
    execution_id: str,
    reference: str,
    *,
    success: bool | None = True,
    action_id: str | None = None,
    time: str | None = None,
) -> dict[str, Any]:
    """A payment-acceptance notification as Payrails documents it."""
    details: dict[str, Any] = {
        "action": "authorize",
        "actionId": action_id or str(uuid.uuid4()),
        "execution": {
            "workflowCode": "payment-acceptance",
            "id": execution_id,
            "merchantReference": reference,
            "holderReference": "cust_1",
            "meta": {},
        },
    }
    if success is not None:
        details["success"] = success
    return {
        "event": event,
        "time": time or datetime.now(UTC).isoformat(timespec="milliseconds"),
        "workspaceId": "sandbox-workspace",
        "eventTrigger": "action",
        "details": details,
    }


@dataclass
class QueueDriver:
    """This test's view of the broker: publish webhook events, read order messages."""

    names: Names
    channel: AbstractChannel
    orders: aio_pika.abc.AbstractQueue

    async def publish_event(
        self, body: Mapping[str, Any] | bytes, *, received_at: datetime | None = None
    ) -> None:
        """Publish as the ingress does: raw body, event-id/name/received-at headers, confirmed."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        data = json.loads(raw) if not isinstance(body, bytes) else {}
        name = str(data.get("event", "unknown"))
        headers: dict[str, Any] = {
            HDR_EVENT_NAME: name,
            HDR_RECEIVED_AT: (received_at or datetime.now(UTC)).isoformat(timespec="milliseconds"),
        }
        if data:
            headers[HDR_EVENT_ID] = derive_event_id(data)
        exchange = await self.channel.get_exchange(self.names.webhooks_exchange, ensure=False)
        message = aio_pika.Message(
            raw,
            headers=headers,
            message_id=headers.get(HDR_EVENT_ID),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type="application/json",
        )
        await exchange.publish(message, name, mandatory=True)

    async def messages_for(
        self, references: Collection[str], count: int, timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        """Wait for ``count`` order messages about ``references``; others are skipped (acked)."""
        bodies: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while len(bodies) < count:
                message = await self.orders.get(fail=False)
                if message is None:
                    await asyncio.sleep(0.05)
                    continue
                await message.ack()
                body = json.loads(message.body)
                if body.get("orderReference") in references:
                    body["_message_id"] = message.message_id
                    body["_routing_key"] = message.routing_key
                    bodies.append(body)
        return bodies

    async def settled_messages_for(
        self, sessions: async_sessionmaker[AsyncSession], references: Collection[str]
    ) -> list[dict[str, Any]]:
        """Once every outbox row of ``references`` is published: all their messages so far."""

        async def settled() -> bool:
            return not await unpublished_count(sessions, references)

        await wait_until(settled)
        bodies: list[dict[str, Any]] = []
        for message in await self.drain(self.orders.name):
            body = json.loads(message.body)
            if body.get("orderReference") in references:
                body["_message_id"] = message.message_id
                body["_routing_key"] = message.routing_key
                bodies.append(body)
        return bodies

    async def drain(self, queue: str) -> list[AbstractIncomingMessage]:
        """Every message now ready on ``queue``, acked."""
        q = await self.channel.get_queue(queue, ensure=False)
        out: list[AbstractIncomingMessage] = []
        while (message := await q.get(fail=False)) is not None:
            await message.ack()
            out.append(message)
        return out

    async def wait_for(
        self,
        queue: str,
        count: int,
        timeout: float = 15.0,
        keep: Callable[[AbstractIncomingMessage], bool] = lambda _: True,
    ) -> list[Any]:
        """Wait until ``count`` messages ``keep`` accepts have arrived on ``queue``; return them.

        Every message taken is acked; those ``keep`` refuses (say, outbox rows another test of
        the session left for a relay) are dropped.
        """
        out: list[AbstractIncomingMessage] = []
        async with asyncio.timeout(timeout):
            while len(out) < count:
                out += [m for m in await self.drain(queue) if keep(m)]
                if len(out) < count:
                    await asyncio.sleep(0.05)
        return out

    async def ready(self, queue: str) -> int:
        declared = await self.channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0

    async def fetchable(self, queue: str) -> int:
        """Messages a ``basic.get`` can take from ``queue`` now, each put back afterwards.

        Authoritative where ``ready`` is not: under load, the count a quorum queue reports on a
        passive declare was seen to stay 0 for seconds while the queue held a ready message.
        """
        q = await self.channel.get_queue(queue, ensure=False)
        taken: list[AbstractIncomingMessage] = []
        while (message := await q.get(no_ack=False, fail=False)) is not None:
            taken.append(message)
        for message in taken:
            await message.nack(requeue=True)
        return len(taken)


@contextlib.asynccontextmanager
async def open_broker(
    topology: Names, amqp_connection: AbstractRobustConnection
) -> AsyncIterator[QueueDriver]:
    """A confirm channel and a queue bound to ``orders`` with ``#``, deleted afterwards."""
    channel = await open_channel(amqp_connection)
    orders = await channel.declare_queue(f"{topology.prefix}test.orders", auto_delete=False)
    await orders.bind(topology.orders_exchange, routing_key="#")
    yield QueueDriver(topology, channel, orders)
    await orders.delete(if_unused=False, if_empty=False)
    await channel.close()


@pytest.fixture
async def broker(
    settings: Settings, topology: Names, amqp_connection: AbstractRobustConnection
) -> AsyncIterator[QueueDriver]:
    async with open_broker(topology, amqp_connection) as opened:
        yield opened


@pytest.fixture
async def deps(
    settings: Settings,
    topology: Names,
    sessions: async_sessionmaker[AsyncSession],
    amqp_connection: AbstractRobustConnection,
) -> AsyncIterator[Deps]:
    """Worker dependencies on the real services; Payrails at the settings' base URL."""
    channel = await open_channel(amqp_connection)
    async with aiohttp.ClientSession() as http:
        yield Deps(settings, topology, sessions, PayrailsClient(settings, http), channel)
    await channel.close()


@contextlib.asynccontextmanager
async def running_worker(deps: Deps, *, relay: bool = True) -> AsyncIterator[EventsConsumer]:
    """The events consumer (and the outbox relay) in this process, stopped on exit.

    The consumer gets a connection of its own, as a worker process has: closing it at the end
    hands anything it still holds back to the broker, whatever state the channel is in.
    """
    own = await connect_robust(deps.settings.amqp_url.reveal())
    channel = await own.channel(publisher_confirms=False)
    consumer = EventsConsumer(deps, channel)
    stop = asyncio.Event()
    task = asyncio.create_task(OutboxRelay(deps).run(stop)) if relay else None
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()
        stop.set()
        if task is not None:
            await task
        await own.close()


def processed(event: str, outcome: str) -> float:
    """The current value of recon_events_processed_total for one event and outcome."""
    return sample("recon_events_processed_total", event=event, outcome=outcome)


FRICTIONLESS = "4242424242424242"
CHALLENGE = "4000000000003220"
DECLINE = "4000000000009995"
CASCADE = "4000002760003184"
UNKNOWN = "4000000000000119"


@dataclass
class Shop:
    """Creates executions in the sandbox and their orders in the database, as the checkout does."""

    payrails: PayrailsClient
    sandbox: SandboxHandle
    sessions: async_sessionmaker[AsyncSession]

    async def pay(self, card: str, *, with_order: bool = True) -> tuple[str, str]:
        """Create the execution, the order (authorizing), then authorize; (reference, exec id)."""
        reference = new_reference()
        execution = await self.payrails.create_execution(
            merchant_reference=reference,
            holder_reference="cust_1",
            meta={},
            idempotency_key=uuid.uuid4(),
        )
        if with_order:
            await insert_order(self.sessions, execution_id=execution.id, reference=reference)
        init = await self.payrails.client_init(
            holder_reference="cust_1", init_type="secureFields", idempotency_key=uuid.uuid4()
        )
        instrument = await self.sandbox.tokenize(init, card)
        await self.payrails.authorize(
            execution.id,
            amount=Money(Decimal("12.50"), "EUR"),
            payment_instrument_id=instrument,
            payment_method_code="card",
            return_url="http://shop.example/return",
            idempotency_key=uuid.uuid4(),
        )
        return reference, execution.id

    async def bodies(self, execution_id: str, count: int) -> list[dict[str, Any]]:
        """Wait for the sandbox to have emitted ``count`` webhooks for the execution."""
        async with asyncio.timeout(10):
            while True:
                items = await self.sandbox.deliveries(execution_id=execution_id)
                originals = [d for d in items if not d.get("duplicateOf")]
                if len(originals) >= count:
                    return [d["body"] for d in sorted(originals, key=lambda d: d["createdAt"])]
                await asyncio.sleep(0.05)


@pytest.fixture
def shop(
    payrails: PayrailsClient, sandbox: SandboxHandle, sessions: async_sessionmaker[AsyncSession]
) -> Shop:
    return Shop(payrails, sandbox, sessions)


@pytest.fixture
def sandbox_deps(deps: Deps, payrails: PayrailsClient) -> Deps:
    """Worker dependencies whose Payrails client talks to this test's sandbox."""
    return dataclasses.replace(deps, payrails=payrails)


def total_processed() -> float:
    """Every webhook event the worker has finished, whatever its outcome."""
    total = 0.0
    for family in REGISTRY.collect():
        if family.name == "recon_events_processed":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


def processed_since(before: float, count: int) -> Callable[[], Awaitable[bool]]:
    """A predicate for wait_until: ``count`` more events finished since ``before``."""

    async def done() -> bool:
        return total_processed() >= before + count

    return done


@dataclass
class ReadOnlyDatabase:
    """The run's database refusing writes; ``read_only`` gives deps whose pool is made then."""

    base: Deps
    switch: ReadOnlySwitch
    engines: list[AsyncEngine] = field(default_factory=list)

    def read_only(self) -> Deps:
        self.switch.on()
        engine = create_engine(self.base.settings)
        self.engines.append(engine)
        return dataclasses.replace(self.base, sessions=create_sessionmaker(engine))

    def writable(self) -> None:
        self.switch.off()


@pytest.fixture
async def read_only_database(
    sandbox_deps: Deps, service_urls: ServiceUrls
) -> AsyncIterator[ReadOnlyDatabase]:
    database = ReadOnlyDatabase(
        sandbox_deps, ReadOnlySwitch(sandbox_deps.settings.database_url, service_urls)
    )
    try:
        yield database
    finally:
        database.writable()
        for engine in database.engines:
            await engine.dispose()
