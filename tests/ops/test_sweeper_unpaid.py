"""The sweeper and merchant-created orders nobody has paid yet: they wait for their session TTL."""

from __future__ import annotations

import dataclasses

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import Order
from tests.ops.shop import STUCK_AFTER, make_stuck
from tests.worker.conftest import insert_order
from worker.abandon import EXPIRED
from worker.deps import Deps
from worker.sweeper import sweep_once


async def merchant_order(sessions: async_sessionmaker[AsyncSession]) -> str:
    """An order as the merchant API creates it: no instrument until the shopper pays."""
    order = await insert_order(sessions, execution_id=None, status="created")
    return order.reference


async def test_an_unpaid_order_within_its_session_lifetime_is_not_abandoned(
    ops_deps: Deps, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference = await merchant_order(sessions)
    await make_stuck(sessions, [reference])  # past the sweeper's threshold...
    ttl = 3 * STUCK_AFTER.total_seconds()  # ...but within the checkout session's lifetime
    deps = dataclasses.replace(
        ops_deps,
        settings=ops_deps.settings.model_copy(update={"checkout_session_ttl_seconds": ttl}),
    )

    result = await sweep_once(deps)

    assert reference not in result.abandoned


async def test_an_unpaid_order_past_its_session_lifetime_expires_as_payment_failed(
    ops_deps: Deps, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference = await merchant_order(sessions)
    await make_stuck(sessions, [reference])

    result = await sweep_once(ops_deps)

    assert reference in result.abandoned
    async with sessions() as session:
        order = await session.scalar(select(Order).where(Order.reference == reference))
    assert order is not None
    assert (order.status, order.failure_reason) == ("payment_failed", EXPIRED)
