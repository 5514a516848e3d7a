"""What the ingress apps publish through: one interface, two implementations.

``ingress.broker`` (the custom publish-only connection) and ``ingress.aio_pika_broker`` (aio-pika,
as the worker publishes) keep the same guarantees: persistent, mandatory publishes awaited until
RabbitMQ confirms them, within AMQP_PUBLISH_TIMEOUT_SECONDS; a return, a nack, a timeout or a
lost connection raise PublishError (the apps answer 503). WEBHOOK_PUBLISHER chooses the webhook
ingress's; the checkout's authorize commands always go through aio-pika."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol

import structlog
from aiohttp import web

from ingress.same_id import SameIdGate
from shared.backoff import Backoff
from shared.messaging import Names

log = structlog.get_logger("ingress.broker")

HeaderValue = str | int
CleanupContext = Callable[[web.Application], AsyncIterator[None]]
SETUP_TIMEOUT_SECONDS = 30.0  # connect, declare the topology, open the confirm channel


class Publisher(Protocol):
    """A confirmed publisher to RabbitMQ with a bounded wait."""

    names: Names
    same_id: SameIdGate  # every publish goes through it (a test holds one to show a storm)

    @property
    def is_ready(self) -> bool:
        """True while publishes can be taken (the readiness check)."""

    async def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for readiness."""

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: Mapping[str, HeaderValue],
    ) -> None:
        """Return once the broker confirmed; raise PublishError otherwise."""


async def connect_until_up(
    setup: Callable[[], Awaitable[None]], backoff: Backoff, closing: Callable[[], bool]
) -> None:
    """Run ``setup`` until it succeeds or ``closing()``; back off, jittered, between tries."""
    delays = backoff.delays()
    while not closing():
        try:
            async with asyncio.timeout(SETUP_TIMEOUT_SECONDS):
                await setup()
        except Exception as exc:  # any failure to reach or set up the broker: retry
            delay = next(delays)
            log.warning("broker.connect_failed", error=type(exc).__name__, retry_in=delay)
            await asyncio.sleep(delay)
            continue
        log.info("broker.connected")
        return
