"""``executionActionUpdated`` is a reconciled event: the worker re-polls and applies it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.waiting import wait_until
from tests.worker.conftest import (
    FRICTIONLESS,
    QueueDriver,
    Shop,
    order_status,
    processed,
    running_worker,
    transitions_of,
    webhook_body,
)
from worker.deps import Deps

UPDATED = "executionActionUpdated"


async def test_action_updated_for_a_paid_execution_ends_paid_with_exactly_one_message(
    shop: Shop,
    sandbox_deps: Deps,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference, execution_id = await shop.pay(FRICTIONLESS)
    await shop.bodies(execution_id, 1)  # the sandbox has finished the authorize: it is paid
    reconciled = processed(UPDATED, "reconciled")

    async with running_worker(sandbox_deps):
        await broker.publish_event(webhook_body(UPDATED, execution_id, reference))

        async def paid() -> bool:
            return await order_status(sessions, reference) == "paid"

        await wait_until(paid)
        messages = await broker.settled_messages_for(sessions, {reference})

    assert processed(UPDATED, "reconciled") == reconciled + 1
    transitions = [(t.from_status, t.to_status) for t in await transitions_of(sessions, reference)]
    assert transitions == [("authorizing", "paid")]
    assert [m["_routing_key"] for m in messages] == ["order.paid"]
    assert messages[0]["status"] == "paid"
