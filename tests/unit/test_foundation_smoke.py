"""The foundation fixtures reach the real services."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.messaging import Names


async def test_topology_declares_on_the_real_broker(topology: Names) -> None:
    assert topology.events_queue.endswith("reconciler.webhook-events")


async def test_migrated_database_has_the_orders_table(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        assert await session.scalar(text("SELECT to_regclass('orders') IS NOT NULL"))
