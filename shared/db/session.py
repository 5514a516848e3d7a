"""Engine and session factories. Nothing is created at import time."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from shared.config import DatabaseSettings
from shared.db.failover import drop_connections_on_failover

OUTBOX_CHANNEL = "recon_outbox"  # NOTIFY channel the outbox relay LISTENs on


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    """An async engine on psycopg 3 that checks connections before use and drops them all when
    one learns the primary has failed over (see ``shared.db.failover``)."""
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        pool_timeout=settings.database_pool_timeout_seconds,
        connect_args={"connect_timeout": 5},
    )
    drop_connections_on_failover(engine)
    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
