"""worker.gauges: queue depths by passive declare, outbox backlog, orders by status and payment
operations by kind and state."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from aio_pika.abc import AbstractRobustConnection
from prometheus_client import REGISTRY
from sqlalchemy import select

from shared.db.models import Order, PaymentOperation
from shared.operation_states import OperationKind, OperationState
from shared.order_store import utcnow
from tests.paid_orders import insert_paid_order
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


async def test_the_oldest_undecided_operation_of_each_kind_gives_its_age(
    deps: Deps, amqp_connection: AbstractRobustConnection
) -> None:
    reference = await insert_paid_order(deps.sessions, captured="100.00")
    async with deps.sessions.begin() as session:
        order_id = await session.scalar(select(Order.id).where(Order.reference == reference))
        assert order_id is not None
        session.add(
            PaymentOperation(
                order_id=order_id,
                kind=OperationKind.REFUND,
                state=OperationState.IN_FLIGHT,
                amount_value=Decimal("5.00"),
                currency="EUR",
                idempotency_key=uuid.uuid4(),
                created_at=utcnow() - timedelta(hours=2),
            )
        )

    await refresh_all(amqp_connection, deps)

    assert sample("recon_operations_oldest_pending_age_seconds", kind="refund") >= 7200
    assert sample("recon_operations", kind="refund", state="in_flight") >= 1
