"""The events consumer's metrics and its one log line per message."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.testing import capture_logs

from shared.db.models import OutboxMessage
from tests.waiting import sample, wait_until
from tests.worker.conftest import (
    FRICTIONLESS,
    QueueDriver,
    Shop,
    insert_order,
    processed_since,
    running_worker,
    total_processed,
    webhook_body,
)
from worker.deps import Deps
from worker.gauges import refresh_outbox_gauges


async def test_reconciled_event_logs_one_line_with_event_execution_and_order(
    shop: Shop, sandbox_deps: Deps, broker: QueueDriver
) -> None:
    reference, execution_id = await shop.pay(FRICTIONLESS)
    [completed] = await shop.bodies(execution_id, 1)
    before = total_processed()

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        async with running_worker(sandbox_deps, relay=False):
            await broker.publish_event(completed)
            await wait_until(processed_since(before, 1))

    [line] = [e for e in logs if e["event"] == "event.processed"]
    assert line["execution_id"] == execution_id
    assert line["order_reference"] == reference
    assert line["event_id"]
    assert line["outcome"] == "reconciled"
    assert line["to_status"] == "paid"


async def test_event_without_order_logs_the_reference_it_carries(
    shop: Shop, sandbox_deps: Deps, broker: QueueDriver
) -> None:
    reference, execution_id = await shop.pay(FRICTIONLESS, with_order=False)
    [completed] = await shop.bodies(execution_id, 1)
    before = total_processed()

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        async with running_worker(sandbox_deps, relay=False):
            await broker.publish_event(completed)
            await wait_until(processed_since(before, 1))

    line = next(e for e in logs if e["event"] == "event.processed")
    assert (line["order_reference"], line["outcome"]) == (reference, "retried")


async def test_processing_time_is_observed_per_outcome(deps: Deps, broker: QueueDriver) -> None:
    body = webhook_body("executionCreated", str(uuid.uuid4()), "ord_timed")
    count = "recon_event_processing_seconds_count"
    before = sample(count, outcome="ignored")

    async with running_worker(deps, relay=False):
        await broker.publish_event(body)

        async def observed() -> bool:
            return sample(count, outcome="ignored") >= before + 1

        await wait_until(observed)


async def test_dead_letter_is_counted_by_queue_and_reason(deps: Deps, broker: QueueDriver) -> None:
    labels = {"queue": "reconciler.webhook-events", "reason": "invalid_payload"}
    before = sample("recon_dead_letters_total", **labels)

    async with running_worker(deps, relay=False):
        await broker.publish_event(b"not json")
        await broker.wait_for(deps.names.dead_letters_queue, 1)

    assert sample("recon_dead_letters_total", **labels) == before + 1


async def test_repolls_are_counted_by_outcome(
    shop: Shop, sandbox_deps: Deps, broker: QueueDriver
) -> None:
    _, execution_id = await shop.pay(FRICTIONLESS)
    [completed] = await shop.bodies(execution_id, 1)
    before = sample("recon_repolls_total", outcome="ok")
    processed = total_processed()

    async with running_worker(sandbox_deps, relay=False):
        await broker.publish_event(completed)
        await wait_until(processed_since(processed, 1))

    assert sample("recon_repolls_total", outcome="ok") == before + 1


async def test_outbox_oldest_age_gauge_reports_an_old_unpublished_row(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    order = await insert_order(sessions, execution_id=str(uuid.uuid4()))
    row = OutboxMessage(
        message_id=str(uuid.uuid4()),
        exchange="orders",
        routing_key="order.paid",
        body={"orderReference": order.reference},
        order_id=order.id,
        created_at=datetime.now(UTC) - timedelta(hours=2),
    )
    async with sessions.begin() as session:
        session.add(row)
    try:
        await refresh_outbox_gauges(sessions)
    finally:
        async with sessions.begin() as session:
            await session.execute(delete(OutboxMessage).where(OutboxMessage.id == row.id))

    assert sample("recon_outbox_oldest_age_seconds") >= 2 * 3600
    assert sample("recon_outbox_backlog") >= 1
