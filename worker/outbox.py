"""The outbox relay: unpublished outbox rows to exchange ``orders``, confirmed, then marked.

Rows are claimed in batches with FOR UPDATE SKIP LOCKED, so several relays can run at once.
Each is published persistent, mandatory and confirmed with the row's stable message_id, and
marked published in the transaction that holds the claim: a crash before the commit publishes
the row again with the same message_id, which consumers dedupe. A LISTEN connection wakes the
relay as soon as a transition commits; a slow poll covers lost notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import structlog
from sqlalchemy import Select, Text, cast, select, update
from sqlalchemy.engine import make_url

from shared import metrics
from shared.backoff import Backoff, pause
from shared.db.models import OutboxMessage
from shared.db.session import OUTBOX_CHANNEL
from shared.errors import PublishError
from shared.messaging import persistent_properties, publish_frames
from shared.order_store import SCHEMA_VERSION
from worker.deps import Deps

log = structlog.get_logger("worker.outbox")
SCHEMA_HEADER = "x-schema-version"
_RELAY_BACKOFF = Backoff(start=0.2, cap=5.0)
_LISTEN_BACKOFF = Backoff(start=0.5, cap=5.0)
_LISTEN_STABLE_SECONDS = 10.0  # a LISTEN connection that lasted this long starts a new backoff
PUBLISHES_IN_FLIGHT = 32
PAID_ROUTING_KEY = "order.paid"


def plain_conninfo(database_url: str) -> str:
    """The SQLAlchemy URL as a libpq URL for a bare psycopg connection."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


@dataclass(frozen=True, slots=True)
class PendingRow:
    """The columns of an unpublished outbox row the relay needs; the body as JSON text."""

    id: int
    message_id: str
    exchange: str
    routing_key: str
    body: str
    order_id: int | None
    webhook_received_at: datetime | None


def claim_query(
    limit: int,
) -> Select[int, str, str, str, str, int | None, datetime | None]:
    """Unpublished rows, oldest first, locked; rows another relay holds are skipped."""
    return (
        select(
            OutboxMessage.id,
            OutboxMessage.message_id,
            OutboxMessage.exchange,
            OutboxMessage.routing_key,
            cast(OutboxMessage.body, Text),  # JSONB as text: no decode and re-encode
            OutboxMessage.order_id,
            OutboxMessage.webhook_received_at,
        )
        .where(OutboxMessage.published_at.is_(None))
        .order_by(OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


class OutboxRelay:
    """One relay; ``run`` until ``stop`` is set."""

    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._wakeup = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop``: after each NOTIFY, or every OUTBOX_POLL_SECONDS."""
        listener = asyncio.create_task(self.listen(stop), name="outbox-listen")
        log.info("outbox.started")
        try:
            await self._relay_until(stop)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            log.info("outbox.stopped")

    async def _relay_until(self, stop: asyncio.Event) -> None:
        """Relay pass after pass; a failed pass backs off, and a NOTIFY does not cut that short."""
        batch = self._deps.settings.outbox_batch_size
        failures = _RELAY_BACKOFF.delays()
        while not stop.is_set():
            self._wakeup.clear()
            try:
                published = await self.relay_once()
            except Exception as exc:  # the boundary of one pass: the next one tries again
                delay = next(failures)
                log.warning("outbox.relay_failed", error=type(exc).__name__, retry_in=delay)
                await pause(delay, stop)
                continue
            failures = _RELAY_BACKOFF.delays()
            if published < batch:  # else more rows are waiting
                await pause(self._deps.settings.outbox_poll_seconds, stop, self._wakeup)

    async def relay_once(self) -> int:
        """Claim one batch, publish it, mark what was confirmed; return how many were published."""
        deps = self._deps
        async with deps.sessions.begin() as session:
            result = await session.execute(claim_query(deps.settings.outbox_batch_size))
            rows = [PendingRow(*row) for row in result]
            if not rows:
                return 0
            confirmed = await self._publish_all(rows)
            now = datetime.now(UTC)
            if confirmed:
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_([row.id for row in confirmed]))
                    .values(published_at=now),
                    execution_options={"synchronize_session": False},
                )
        self._observe(confirmed, now)
        return len(confirmed)

    async def _publish_all(self, rows: Sequence[PendingRow]) -> list[PendingRow]:
        """Publish concurrently across orders, in row order within one order."""
        by_order: dict[int | None, list[PendingRow]] = defaultdict(list)
        for row in rows:
            by_order[row.order_id].append(row)
        # Bounded: confirms still pipeline, but a few hundred publishes queued on the channel lock
        # cost O(n^2) in asyncio.Lock.acquire (it scans every waiter).
        slots = asyncio.Semaphore(PUBLISHES_IN_FLIGHT)

        async def bounded(chain: list[PendingRow]) -> list[PendingRow]:
            async with slots:
                return await self._publish_chain(chain)

        chains = await asyncio.gather(*(bounded(chain) for chain in by_order.values()))
        confirmed = {row.id for chain in chains for row in chain}
        return [row for row in rows if row.id in confirmed]

    async def _publish_chain(self, chain: list[PendingRow]) -> list[PendingRow]:
        """Publish one order's rows in order; stop at the first failure (it stays unpublished)."""
        done: list[PendingRow] = []
        for row in chain:
            try:
                await self.publish(row)
            except PublishError as exc:
                log.warning("outbox.publish_failed", message_id=row.message_id, error=exc.reason)
                break
            done.append(row)
        return done

    async def publish(self, row: PendingRow) -> None:
        """Publish one row, persistent + mandatory, and wait for the broker's confirm."""
        properties = persistent_properties(
            message_id=row.message_id,
            headers={SCHEMA_HEADER: SCHEMA_VERSION},
            timestamp=datetime.now(UTC),
        )
        await publish_frames(
            self._deps.channel,
            f"{self._deps.names.prefix}{row.exchange}",
            row.routing_key,
            row.body.encode(),
            properties,
            timeout=self._deps.settings.amqp_publish_timeout_seconds,
        )

    def _observe(self, rows: Sequence[PendingRow], now: datetime) -> None:
        for row in rows:
            metrics.OUTBOX_PUBLISHED.labels(row.routing_key).inc()
            if row.routing_key == PAID_ROUTING_KEY and row.webhook_received_at is not None:
                seconds = (now - row.webhook_received_at).total_seconds()
                metrics.WEBHOOK_TO_PAID_SECONDS.observe(max(seconds, 0.0))
        if rows:
            log.debug("outbox.published", count=len(rows))

    async def listen(self, stop: asyncio.Event) -> None:
        """LISTEN on the outbox channel and wake the relay; reconnect when the connection drops."""
        conninfo = plain_conninfo(self._deps.settings.database_url)
        delays = _LISTEN_BACKOFF.delays()
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self._listen_once(conninfo, stop)
            except (psycopg.Error, OSError) as exc:
                if time.monotonic() - started > _LISTEN_STABLE_SECONDS:
                    delays = _LISTEN_BACKOFF.delays()  # it had been working: start over
                delay = next(delays)
                log.warning("outbox.listen_lost", error=type(exc).__name__, retry_in=delay)
                self._wakeup.set()  # a notification may have been missed while disconnected
                await pause(delay, stop)

    async def _listen_once(self, conninfo: str, stop: asyncio.Event) -> None:
        async with await psycopg.AsyncConnection.connect(
            conninfo, autocommit=True, connect_timeout=5
        ) as conn:
            await conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
            self._wakeup.set()
            while not stop.is_set():
                async for _ in conn.notifies(timeout=1.0):
                    self._wakeup.set()
                await conn.execute("SELECT 1")  # notice a silently dropped connection


async def run_outbox_relay(deps: Deps, stop: asyncio.Event) -> None:
    """Entry point for ``python -m worker``: one relay until ``stop``."""
    await OutboxRelay(deps).run(stop)
