"""Worker benchmark (``make bench``): prints figures, asserts nothing about speed.

1. raw: consume + ack of the same broker, no work at all (uvloop, its own process);
2. naive: ``python -m worker`` with one message per transaction and prefetch 1;
3. batched: ``python -m worker`` tuned for load, on >= 10,000 pre-loaded events (orders and
   executions created in the sandbox, every event re-polled over real HTTP);
4. latency: webhook received -> order.paid confirmed, at a steady 200 events/s.

Every party runs as its own process, as in production: the sandbox (``python -m sandbox``), the
worker (``python -m worker --only events,outbox``) and this test, which publishes and measures
through the database. Orders are bulk-inserted; executions are created over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal

import aio_pika
import aiohttp
import pytest
from aio_pika.abc import AbstractRobustConnection
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sandbox.control_client import SandboxControl
from shared.db.models import Order, OutboxMessage
from shared.db.session import create_engine, create_sessionmaker
from shared.logging import configure_logging
from shared.messaging import (
    HDR_EVENT_ID,
    HDR_EVENT_NAME,
    HDR_RECEIVED_AT,
    Names,
    open_channel,
)
from shared.money import Money
from shared.payrails.client import PayrailsClient, open_payrails_client
from tests.bench.cpu import cpu_seconds
from tests.ports import free_port
from tests.settings import Settings
from tests.worker.conftest import FRICTIONLESS

BATCHED_EVENTS = 10_000
NAIVE_EVENTS = 1_000
RAW_MESSAGES = 20_000
LATENCY_RATE = 200
LATENCY_EVENTS = 2_000
NAIVE = {"WORKER_PREFETCH": "1", "WORKER_EVENT_BATCH_SIZE": "1", "WORKER_EVENT_BATCHES": "1"}
BATCHED = {
    "WORKER_PREFETCH": "1200",
    "WORKER_EVENT_BATCH_SIZE": "300",
    "WORKER_EVENT_BATCHES": "4",
    "OUTBOX_BATCH_SIZE": "500",
}


@pytest.fixture
async def bench_sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.model_copy(update={"database_pool_size": 10}))
    yield create_sessionmaker(engine)
    await engine.dispose()


@dataclasses.dataclass
class RemoteSandbox:
    url: str
    control: SandboxControl
    payrails: PayrailsClient


@pytest.fixture
async def remote_sandbox(settings: Settings) -> AsyncIterator[RemoteSandbox]:
    """``python -m sandbox`` on a free port, webhooks off, actions completing at once."""
    port = free_port()
    env = {
        **os.environ,
        "SANDBOX_HOST": "127.0.0.1",
        "SANDBOX_PORT": str(port),
        "SANDBOX_WEBHOOK_URL": "",
        "SANDBOX_ACTION_DELAY_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox", env=env, stdout=asyncio.subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    remote = settings.model_copy(
        update={"payrails_base_url": url, "payrails_timeout_seconds": 30.0}
    )
    try:
        async with (
            aiohttp.ClientSession() as http,
            open_payrails_client(remote) as payrails,
        ):
            async with asyncio.timeout(30):
                while True:
                    try:
                        await SandboxControl(url, http).stats()
                        break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.1)
            yield RemoteSandbox(url, SandboxControl(url, http), payrails)
    finally:
        process.terminate()
        await process.wait()


async def instrument_id(sandbox: RemoteSandbox) -> str:
    init = await sandbox.payrails.client_init(
        holder_reference="bench", init_type="secureFields", idempotency_key=uuid.uuid4()
    )
    return await sandbox.control.tokenize(init, FRICTIONLESS)


async def create_paid_execution(sandbox: RemoteSandbox, instrument: str, reference: str) -> str:
    execution = await sandbox.payrails.create_execution(
        merchant_reference=reference,
        holder_reference="bench",
        meta={},
        idempotency_key=uuid.uuid4(),
    )
    await sandbox.payrails.authorize(
        execution.id,
        amount=Money(Decimal("12.50"), "EUR"),
        payment_instrument_id=instrument,
        payment_method_code="card",
        return_url="http://shop.example/return",
        idempotency_key=uuid.uuid4(),
    )
    return execution.id


async def preload(
    sandbox: RemoteSandbox,
    sessions: async_sessionmaker[AsyncSession],
    instrument: str,
    count: int,
) -> tuple[str, list[bytes]]:
    """``count`` authorized executions with their orders (authorizing); the batch's customer
    reference and the webhooks."""
    batch = f"bench_{uuid.uuid4().hex[:12]}"
    references = [f"bench_{uuid.uuid4().hex[:20]}" for _ in range(count)]
    execution_ids: list[str] = []
    for start in range(0, count, 100):
        chunk = references[start : start + 100]
        execution_ids += await asyncio.gather(
            *(create_paid_execution(sandbox, instrument, r) for r in chunk)
        )
    rows = [
        {
            "reference": reference,
            "customer_reference": batch,
            "amount_value": Decimal("12.50"),
            "currency": "EUR",
            "status": "authorizing",
            "execution_id": execution_id,
        }
        for reference, execution_id in zip(references, execution_ids, strict=True)
    ]
    async with sessions.begin() as session:
        for start in range(0, len(rows), 2000):
            await session.execute(insert(Order), rows[start : start + 2000])
    wanted = set(execution_ids)
    async with asyncio.timeout(120):
        while True:
            deliveries = await sandbox.control.deliveries(event="executionActionCompleted")
            bodies = [
                json.dumps(d["body"]).encode() for d in deliveries if d["executionId"] in wanted
            ]
            if len(bodies) >= count:
                return batch, bodies
            await asyncio.sleep(0.2)


def event_message(body: bytes) -> aio_pika.Message:
    data = json.loads(body)
    headers = {
        HDR_EVENT_NAME: data["event"],
        HDR_RECEIVED_AT: datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    return aio_pika.Message(
        body, headers=headers, message_id=headers.get(HDR_EVENT_ID), content_type="application/json"
    )


async def publish_all(
    channel: aio_pika.abc.AbstractChannel, names: Names, bodies: Sequence[bytes]
) -> None:
    exchange = await channel.get_exchange(names.webhooks_exchange, ensure=False)
    for start in range(0, len(bodies), 500):
        chunk = bodies[start : start + 500]
        await asyncio.gather(
            *(exchange.publish(event_message(b), "executionActionCompleted") for b in chunk)
        )


RAW_CONSUMER = """
import asyncio, sys, time
import aio_pika, uvloop

async def main(url, queue_name, count):
    connection = await aio_pika.connect(url)
    channel = await connection.channel(publisher_confirms=False)
    await channel.set_qos(prefetch_count=400)
    queue = await channel.get_queue(queue_name)
    done = asyncio.Event()
    acked = 0

    async def on_message(message):
        nonlocal acked
        await message.ack()
        acked += 1
        if acked >= count:
            done.set()

    started = time.perf_counter()
    await queue.consume(on_message)
    await done.wait()
    print(count / (time.perf_counter() - started))
    await connection.close()

uvloop.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def measure_raw(connection: AbstractRobustConnection, settings: Settings) -> float:
    """Messages/s for consume + ack alone (uvloop, its own process) on a quorum queue."""
    channel = await open_channel(connection)
    queue_name = f"{settings.amqp_name_prefix}bench.raw"
    queue = await channel.declare_queue(
        queue_name, durable=True, arguments={"x-queue-type": "quorum"}
    )
    body = b'{"event":"executionActionCompleted"}'
    for start in range(0, RAW_MESSAGES, 500):
        await asyncio.gather(
            *(
                channel.default_exchange.publish(aio_pika.Message(body), queue_name)
                for _ in range(min(500, RAW_MESSAGES - start))
            )
        )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RAW_CONSUMER,
        settings.amqp_url.reveal(),
        queue_name,
        str(RAW_MESSAGES),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    await queue.delete(if_unused=False, if_empty=False)
    await channel.close()
    return float(out.decode().strip())


@contextlib.asynccontextmanager
async def worker_process(
    settings: Settings,
    base_env: dict[str, str],
    payrails_url: str,
    processes: int = 1,
    **tuning: str,
) -> AsyncIterator[list[int]]:
    """``processes`` copies of ``python -m worker --only events,outbox``, with this run's names.

    Stopped by SIGTERM. Several processes compete on the same queue, as replicas do.
    """
    env = {
        **os.environ,
        **base_env,
        "AMQP_NAME_PREFIX": settings.amqp_name_prefix,
        "PAYRAILS_BASE_URL": payrails_url,
        "LOG_LEVEL": "WARNING",
        "ADMIN_HOST": "127.0.0.1",
        "AMQP_PUBLISH_TIMEOUT_SECONDS": "15",
        "DATABASE_POOL_SIZE": "10",
        **tuning,
    }
    started = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "worker",
            "--only",
            "events,outbox",
            env={**env, "WORKER_METRICS_PORT": str(free_port())},
        )
        for _ in range(processes)
    ]
    try:
        yield [process.pid for process in started]
    finally:
        for process in started:
            process.terminate()
        for process in started:
            await process.wait()


async def paid_count(sessions: async_sessionmaker[AsyncSession], batch: str) -> int:
    async with sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Order)
            .where(Order.customer_reference == batch, Order.status == "paid")
        )
    return int(count or 0)


@dataclasses.dataclass(frozen=True)
class Rate:
    events_per_s: float
    drained_s: float  # from the first order seen paid to the last order.paid confirmed
    cpu_us_per_event: float  # the worker processes' CPU over that span, per event


async def reconcile_rate(
    sessions: async_sessionmaker[AsyncSession], batch: str, total: int, pids: Sequence[int]
) -> Rate:
    """Orders/s reaching paid, from the first one seen paid to the last; then the outbox drain."""
    first: tuple[float, int, float] | None = None
    async with asyncio.timeout(900):
        while (count := await paid_count(sessions, batch)) < total:
            if count and first is None:
                first = (time.perf_counter(), count, sum(map(cpu_seconds, pids)))
            await asyncio.sleep(0.2)
    finished = time.perf_counter()
    started, already, cpu_before = first or (finished - 1.0, 0, sum(map(cpu_seconds, pids)))
    async with asyncio.timeout(300):
        while await unpublished(sessions):
            await asyncio.sleep(0.2)
    events = total - already
    return Rate(
        events_per_s=events / (finished - started),
        drained_s=time.perf_counter() - started,
        cpu_us_per_event=(sum(map(cpu_seconds, pids)) - cpu_before) / events * 1e6,
    )


async def unpublished(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        rows = await session.scalars(
            select(OutboxMessage.id).where(OutboxMessage.published_at.is_(None)).limit(1)
        )
        return len(list(rows))


async def paid_latencies(
    sessions: async_sessionmaker[AsyncSession], since: datetime
) -> list[float]:
    async with sessions() as session:
        rows = await session.execute(
            select(OutboxMessage.webhook_received_at, OutboxMessage.published_at).where(
                OutboxMessage.routing_key == "order.paid",
                OutboxMessage.created_at >= since,
                OutboxMessage.webhook_received_at.is_not(None),
                OutboxMessage.published_at.is_not(None),
            )
        )
        return [(published - received).total_seconds() for received, published in rows]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def test_bench_worker(
    settings: Settings,
    base_env: dict[str, str],
    topology: Names,
    remote_sandbox: RemoteSandbox,
    bench_sessions: async_sessionmaker[AsyncSession],
    amqp_connection: AbstractRobustConnection,
) -> None:
    configure_logging("WARNING", json=True)
    sandbox = remote_sandbox
    instrument = await instrument_id(sandbox)
    publisher = await open_channel(amqp_connection)

    raw_rate = await measure_raw(amqp_connection, settings)
    print(f"\n[bench worker] raw consume+ack: {raw_rate:,.0f} msg/s ({RAW_MESSAGES:,} messages)")

    batch, bodies = await preload(sandbox, bench_sessions, instrument, NAIVE_EVENTS)
    await publish_all(publisher, topology, bodies)
    async with worker_process(settings, base_env, sandbox.url, **NAIVE) as pids:
        naive = await reconcile_rate(bench_sessions, batch, NAIVE_EVENTS, pids)
    naive_rate = naive.events_per_s
    print(
        f"[bench worker] naive (1 msg/transaction, prefetch 1): {naive_rate:,.0f} events/s, "
        f"worker CPU {naive.cpu_us_per_event:,.0f} us/event"
    )

    started = time.perf_counter()
    batch, bodies = await preload(sandbox, bench_sessions, instrument, BATCHED_EVENTS)
    print(
        f"[bench worker] pre-loaded {BATCHED_EVENTS:,} orders + executions + webhooks "
        f"in {time.perf_counter() - started:.1f}s"
    )
    await publish_all(publisher, topology, bodies)
    async with worker_process(settings, base_env, sandbox.url, **BATCHED) as pids:
        batched = await reconcile_rate(bench_sessions, batch, BATCHED_EVENTS, pids)
        rate = batched.events_per_s
        print(
            f"[bench worker] batched: {rate:,.0f} reconciled events/s "
            f"({BATCHED_EVENTS:,} events; every order.paid confirmed after "
            f"{batched.drained_s:.1f}s) = {rate / raw_rate:.2f}x raw, {rate / naive_rate:.1f}x "
            f"naive; worker CPU {batched.cpu_us_per_event:,.0f} us/event"
        )
        await steady_latency(bench_sessions, publisher, topology, sandbox, instrument)

    replicas = max(2, os.cpu_count() or 1)
    batch, bodies = await preload(sandbox, bench_sessions, instrument, BATCHED_EVENTS)
    await publish_all(publisher, topology, bodies)
    async with worker_process(settings, base_env, sandbox.url, replicas, **BATCHED) as pids:
        scaled = (await reconcile_rate(bench_sessions, batch, BATCHED_EVENTS, pids)).events_per_s
        print(
            f"[bench worker] batched, {replicas} worker processes on {os.cpu_count()} cores: "
            f"{scaled:,.0f} reconciled events/s = {scaled / raw_rate:.2f}x raw, "
            f"{scaled / naive_rate:.1f}x naive, {scaled / rate:.2f}x one process"
        )
    await publisher.close()


async def steady_latency(
    sessions: async_sessionmaker[AsyncSession],
    channel: aio_pika.abc.AbstractChannel,
    names: Names,
    sandbox: RemoteSandbox,
    instrument: str,
) -> None:
    """Publish at LATENCY_RATE/s, received-at stamped at publish; p50/p99 to order.paid."""
    _, bodies = await preload(sandbox, sessions, instrument, LATENCY_EVENTS)
    since = datetime.now(UTC)
    exchange = await channel.get_exchange(names.webhooks_exchange, ensure=False)
    started = time.perf_counter()
    for index, body in enumerate(bodies):
        await asyncio.sleep(max(0.0, started + index / LATENCY_RATE - time.perf_counter()))
        await exchange.publish(event_message(body), "executionActionCompleted")
    async with asyncio.timeout(120):
        while len(await paid_latencies(sessions, since)) < LATENCY_EVENTS:
            await asyncio.sleep(0.1)
    latencies = await paid_latencies(sessions, since)
    print(
        f"[bench worker] webhook received -> order.paid confirmed at {LATENCY_RATE} events/s "
        f"({len(latencies):,} events): p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
        f"mean {statistics.fmean(latencies) * 1000:.0f} ms"
    )
