"""worker.gauges: queue depths by passive declare, outbox backlog and orders by status."""

from __future__ import annotations

from aio_pika.abc import AbstractRobustConnection
from prometheus_client import REGISTRY

from tests.waiting import sample, wait_until
from tests.worker.conftest import QueueDriver
from worker.deps import Deps
from worker.gauges import refresh_all


async def test_one_pass_sets_queue_outbox_and_order_gauges(
    deps: Deps, broker: QueueDriver, amqp_connection: AbstractRobustConnection
) -> None:
    await broker.publish_event(b"waiting")

    async def queued() -> bool:
        return await broker.ready(deps.names.events_queue) == 1

    await wait_until(queued)
    await refresh_all(amqp_connection, deps)

    assert sample("recon_queue_messages", queue="reconciler.webhook-events") == 1
    assert sample("recon_outbox_backlog") >= 0
    assert REGISTRY.get_sample_value("recon_orders", {"status": "needs_review"}) is not None
