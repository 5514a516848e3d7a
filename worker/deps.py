"""The worker's explicit dependencies, built once in ``__main__`` and passed to every consumer."""

from __future__ import annotations

from dataclasses import dataclass

from aio_pika.abc import AbstractChannel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.config import WorkerSettings
from shared.messaging import Names
from shared.payrails.client import PayrailsClient


@dataclass(frozen=True)
class Deps:
    """Settings, names, the session factory, the Payrails client and the confirm channel."""

    settings: WorkerSettings
    names: Names
    sessions: async_sessionmaker[AsyncSession]
    payrails: PayrailsClient
    # The confirm channel (publisher_confirms, on_return_raises) for retry/dead-letter/outbox.
    channel: AbstractChannel
