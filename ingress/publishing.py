"""What the ingress apps publish through: one interface, two implementations.

``ingress.broker`` (the custom publish-only connection) and ``ingress.aio_pika_broker`` (aio-pika,
as the worker publishes) keep the same guarantees: persistent, mandatory publishes awaited until
RabbitMQ confirms them, within AMQP_PUBLISH_TIMEOUT_SECONDS; a return, a nack, a timeout or a
lost connection raise PublishError (the apps answer 503). WEBHOOK_PUBLISHER chooses the webhook
ingress's; the checkout's authorize commands always go through aio-pika."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Protocol

from aiohttp import web

from ingress.same_id import SameIdGate
from shared.messaging import Names

HeaderValue = str | int
CleanupContext = Callable[[web.Application], AsyncIterator[None]]


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
