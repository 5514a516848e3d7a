"""Counting outcomes: a commerce backend bound to ``orders``, and the database's own records."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import psycopg
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from prometheus_client.parser import text_string_to_metric_families

from shared.messaging import Names, connect, connect_robust, declare_topology
from tests.settings import Settings


@dataclass
class CommerceBackend:
    """A consumer on its own durable queue bound to ``orders``, deduplicating by message_id."""

    amqp_url: str
    settings: Settings
    deliveries: int = 0
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    routing: dict[str, str] = field(default_factory=dict)
    by_order: dict[str, dict[str, set[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(set))
    )
    first_seen: dict[str, float] = field(default_factory=dict)
    _connection: AbstractRobustConnection | None = None

    @property
    def names(self) -> Names:
        return Names.from_settings(self.settings)

    @property
    def queue_name(self) -> str:
        return f"{self.names.prefix}e2e.commerce-backend"

    async def start(self) -> None:
        self._connection = await connect_robust(
            self.amqp_url,
            reconnect_interval=0.5,
            client_properties={"connection_name": "e2e-commerce-backend"},
        )
        channel = await self._connection.channel()
        await declare_topology(channel, self.settings)
        await channel.set_qos(prefetch_count=500)
        queue = await channel.declare_queue(
            self.queue_name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(self.names.orders_exchange, routing_key="#")
        await queue.consume(self._on_message)

    async def close(self) -> None:
        if self._connection is not None:
            async with self._connection.channel() as channel:
                await channel.queue_delete(self.queue_name)
            await self._connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.deliveries += 1
        message_id = message.message_id or ""
        if message_id not in self.messages:
            body = json.loads(message.body)
            self.messages[message_id] = body
            self.routing[message_id] = message.routing_key or ""
            self.first_seen[message_id] = time.monotonic()
            reference = str(body.get("orderReference"))
            self.by_order[reference][message.routing_key or ""].add(message_id)
        await message.ack()

    def paid_orders(self, references: Iterable[str]) -> set[str]:
        return {ref for ref in references if self.by_order.get(ref, {}).get("order.paid")}

    def duplicated(self, references: Iterable[str], routing_key: str = "order.paid") -> list[str]:
        """Orders announced more than once with distinct message ids: real duplicates."""
        return [
            ref for ref in references if len(self.by_order.get(ref, {}).get(routing_key, ())) > 1
        ]

    def final_messages(self, references: Iterable[str]) -> dict[str, str]:
        """Each order's terminal announcement (paid, payment_failed or needs_review)."""
        terminal = ("order.paid", "order.payment_failed", "order.needs_review")
        found: dict[str, str] = {}
        for ref in references:
            keys = [k for k in terminal if self.by_order.get(ref, {}).get(k)]
            if keys:
                found[ref] = ",".join(keys)
        return found


@dataclass(frozen=True)
class OrderRow:
    reference: str
    status: str
    execution_id: str | None
    version: int
    transitions: int
    paid_transitions: int
    outbox_rows: int


class Ledger:
    """Read-only queries against the run's database; each opens its own short connection."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url.replace("postgresql+psycopg://", "postgresql://")

    async def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        async with await psycopg.AsyncConnection.connect(self.url, connect_timeout=5) as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

    async def orders(self, reference_prefix: str) -> dict[str, OrderRow]:
        rows = await self._rows(
            """
            SELECT o.reference, o.status, o.execution_id, o.version,
                   (SELECT count(*) FROM order_transitions t WHERE t.order_id = o.id),
                   (SELECT count(*) FROM order_transitions t
                     WHERE t.order_id = o.id AND t.to_status = 'paid'),
                   (SELECT count(*) FROM outbox b WHERE b.order_id = o.id)
              FROM orders o WHERE o.reference LIKE %s
            """,
            (reference_prefix + "%",),
        )
        return {r[0]: OrderRow(*r) for r in rows}

    async def status_counts(self) -> dict[str, int]:
        """Orders by status, over the whole database."""
        rows = await self._rows("SELECT status, count(*) FROM orders GROUP BY status")
        return {str(r[0]): int(r[1]) for r in rows}

    async def inbox(self, event_ids: Iterable[str]) -> dict[str, str]:
        """event id -> outcome, for those ids the worker has recorded."""
        ids = list(event_ids)
        found: dict[str, str] = {}
        for start in range(0, len(ids), 5000):
            rows = await self._rows(
                "SELECT event_id, outcome FROM webhook_events WHERE event_id = ANY(%s)",
                (ids[start : start + 5000],),
            )
            found.update({r[0]: r[1] for r in rows})
        return found

    async def unpublished_outbox(self) -> int:
        rows = await self._rows("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        return int(rows[0][0])

    async def first_processed_after(self, wall_time: float) -> float | None:
        """Wall-clock seconds of the first inbox row committed after ``wall_time``."""
        rows = await self._rows(
            "SELECT min(processed_at) FROM webhook_events WHERE processed_at > %s",
            (datetime.fromtimestamp(wall_time, UTC),),
        )
        first = rows[0][0]
        return first.timestamp() if first is not None else None

    async def processed_since(
        self, event_ids: Iterable[str], wall_time: float
    ) -> tuple[int, float]:
        """How many of these events were committed after ``wall_time``, and the last commit."""
        rows = await self._rows(
            "SELECT count(*), max(processed_at) FROM webhook_events"
            " WHERE event_id = ANY(%s) AND processed_at >= %s",
            (list(event_ids), datetime.fromtimestamp(wall_time, UTC)),
        )
        count, last = rows[0]
        return int(count), last.timestamp() if last is not None else wall_time

    async def processed_between(self, event_ids: Iterable[str]) -> tuple[float, float] | None:
        """First and last processed_at (wall seconds) of these events."""
        rows = await self._rows(
            "SELECT min(processed_at), max(processed_at) FROM webhook_events"
            " WHERE event_id = ANY(%s)",
            (list(event_ids),),
        )
        first, last = rows[0]
        return (first.timestamp(), last.timestamp()) if first is not None else None


async def queue_depth(amqp_url: str, queue: str) -> int:
    """Messages ready in ``queue`` (0 when it does not exist)."""
    connection = await connect(amqp_url)
    try:
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            return 0
        return int(declared.declaration_result.message_count or 0)
    finally:
        await connection.close()


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, timeout: float, interval: float = 0.5
) -> bool:
    """Poll ``check`` until it is true or ``timeout`` passes; errors count as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await check():
                return True
        except (psycopg.Error, OSError, aio_pika.exceptions.AMQPError):
            pass
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)


def percentile(values: Iterable[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0.99 for p99) of ``values``; 0.0 when there are none."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class Figures:
    """What a scenario prints: the counts the issue asks for, and anything else it measured."""

    scenario: str
    values: dict[str, Any] = field(default_factory=dict)

    def __setitem__(self, key: str, value: Any) -> None:
        self.values[key] = value

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def render(self) -> str:
        parts = []
        for key, value in self.values.items():
            shown = f"{value:.2f}" if isinstance(value, float) else str(value)
            parts.append(f"{key}={shown}")
        return f"[e2e] {self.scenario}: " + " ".join(parts)

    def print(self, run_dir: Path) -> None:
        """Print the line, and keep it in ``figures.txt`` beside the run's logs."""
        line = self.render()
        print(line, flush=True)
        with (run_dir / "figures.txt").open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")


async def metric_total(urls: Iterable[str], name: str, **labels: str) -> float:
    """Sum one Prometheus counter over processes (``urls`` are their /metrics pages)."""
    total = 0.0
    async with aiohttp.ClientSession() as session:
        for url in urls:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
                text = await response.text()
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == name and all(
                        sample.labels.get(k) == v for k, v in labels.items()
                    ):
                        total += sample.value
    return total
