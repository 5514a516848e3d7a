"""Periodic gauges: queue depths (passive declares), outbox backlog and age, orders by status,
payment operations by kind and state."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import structlog
from aio_pika.abc import AbstractConnection
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import metrics
from shared.db.models import OutboxMessage, PaymentOperation
from shared.messaging import Names
from shared.operation_states import PENDING_STATES, OperationKind, OperationState
from shared.order_store import count_orders_by_status
from shared.state_machine import OrderStatus
from worker.deps import Deps

log = structlog.get_logger("worker.gauges")
GAUGE_INTERVAL_SECONDS = 15.0


def watched_queues(deps: Deps) -> list[str]:
    """Every queue the service declares: work, delay tiers, dead letters, unrouted orders."""
    names: Names = deps.names
    retry = [
        names.retry_queue(source, delay)
        for source in names.work_queues
        for delay in deps.settings.worker_retry_delays_seconds
    ]
    return [*names.work_queues, *retry, names.dead_letters_queue, names.orders_unrouted_queue]


async def refresh_queue_depths(connection: AbstractConnection, deps: Deps) -> None:
    """Read each queue's ready count with a passive declare, on a throwaway channel."""
    async with connection.channel(publisher_confirms=False) as channel:
        for queue in watched_queues(deps):
            declared = await channel.declare_queue(queue, passive=True)
            count = declared.declaration_result.message_count or 0
            metrics.QUEUE_MESSAGES.labels(queue.removeprefix(deps.names.prefix)).set(count)


async def refresh_outbox_gauges(sessions: async_sessionmaker[AsyncSession]) -> None:
    """recon_outbox_backlog and recon_outbox_oldest_age_seconds."""
    query = select(func.count(), func.min(OutboxMessage.created_at)).where(
        OutboxMessage.published_at.is_(None)
    )
    async with sessions() as session:
        backlog, oldest = (await session.execute(query)).one()
    metrics.OUTBOX_BACKLOG.set(backlog)
    age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
    metrics.OUTBOX_OLDEST_AGE_SECONDS.set(max(age, 0.0))


async def refresh_order_counts(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        counts = await count_orders_by_status(session)
    for status in OrderStatus:
        metrics.ORDERS_BY_STATUS.labels(status.value).set(counts.get(status, 0))


async def refresh_operation_counts(sessions: async_sessionmaker[AsyncSession]) -> None:
    """recon_operations by kind and state, and the oldest undecided one's age by kind."""
    query = select(PaymentOperation.kind, PaymentOperation.state, func.count()).group_by(
        PaymentOperation.kind, PaymentOperation.state
    )
    async with sessions() as session:
        rows = (await session.execute(query)).all()
    counts = {(kind, state): count for kind, state, count in rows}
    for kind in OperationKind:
        for state in OperationState:
            metrics.OPERATIONS_BY_STATE.labels(kind.value, state.value).set(
                counts.get((kind, state), 0)
            )
    oldest = (
        select(PaymentOperation.kind, func.min(PaymentOperation.created_at))
        .where(PaymentOperation.state.in_(PENDING_STATES))
        .group_by(PaymentOperation.kind)
    )
    async with sessions() as session:
        since = {kind: created for kind, created in (await session.execute(oldest)).all()}
    now = datetime.now(UTC)
    for kind in OperationKind:
        created = since.get(kind)
        age = (now - created).total_seconds() if created else 0.0
        metrics.OPERATIONS_OLDEST_PENDING_SECONDS.labels(kind.value).set(max(age, 0.0))


async def refresh_all(connection: AbstractConnection, deps: Deps) -> None:
    """One pass; each gauge family fails on its own without stopping the others."""
    steps = {
        "queues": refresh_queue_depths(connection, deps),
        "outbox": refresh_outbox_gauges(deps.sessions),
        "orders": refresh_order_counts(deps.sessions),
        "operations": refresh_operation_counts(deps.sessions),
    }
    for name, step in steps.items():
        try:
            await step
        except Exception as exc:  # a gauge pass never takes the worker down
            log.warning("gauges.refresh_failed", gauge=name, error=type(exc).__name__)


async def run_gauges(
    connection: AbstractConnection,
    deps: Deps,
    stop: asyncio.Event,
    interval: float = GAUGE_INTERVAL_SECONDS,
) -> None:
    """Refresh every gauge each ``interval`` seconds until ``stop``."""
    while not stop.is_set():
        await refresh_all(connection, deps)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
