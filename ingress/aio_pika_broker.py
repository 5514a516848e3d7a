"""RabbitMQ publishing through aio-pika, as the worker does: a robust connection, a confirm channel.

The same guarantees as ``ingress.broker.Broker``: persistent, mandatory publishes on a channel
with publisher confirms and returns raised (``shared.messaging.open_channel``), each bounded by
AMQP_PUBLISH_TIMEOUT_SECONDS in all; a return, a nack, a timeout or a lost connection raise
PublishError, which the apps answer with 503. Publishes sharing a message id go through
``ingress.same_id``.

Until the first connection and the topology are up, ``connect`` retries every
AMQP_RECONNECT_INTERVAL_SECONDS. From then on the connection is aio-pika's robust one: it
reconnects by itself and declares again the topology declared on its channel. While it is
down, publishes fail at once ("disconnected") and readiness is false.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import structlog
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aiohttp import web

from ingress.amqp_wire import Outgoing
from ingress.keys import BROKER, SETTINGS
from ingress.publishing import CleanupContext, PublisherBase, run_publisher
from shared.config import PublisherSettings
from shared.messaging import (
    connect_robust,
    declare_topology,
    open_channel,
    persistent_properties,
    publish_failed,
    publish_frames,
)

log = structlog.get_logger("ingress.broker")

CONTENT_TYPE = "application/json"


class AioPikaBroker(PublisherBase):
    """Owns the robust connection and its confirm channel; publishes with a bounded wait."""

    def __init__(self, settings: PublisherSettings, *, connection_name: str) -> None:
        super().__init__(settings)
        self._connection_name = connection_name
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None

    @property
    def is_ready(self) -> bool:
        """True while the connection and its confirm channel are open."""
        channel = self._channel
        return self._up.is_set() and channel is not None and not channel.is_closed

    async def _connect_once(self) -> None:
        connection = await connect_robust(
            self.settings.amqp_url.reveal(),
            name=self._connection_name,
            reconnect_interval=self.settings.amqp_reconnect_interval_seconds,
        )
        try:
            channel = await open_channel(connection)
            await declare_topology(channel, self.settings)
        except BaseException:
            await connection.close()
            raise
        connection.close_callbacks.add(self._lost)
        connection.reconnect_callbacks.add(self._back)
        self._connection, self._channel = connection, channel
        self._mark(True)

    def _lost(self, _connection: Any, _exc: BaseException | None = None) -> None:
        if not self._closing:
            log.warning("broker.connection_lost")
        self._mark(False)

    def _back(self, _connection: Any) -> None:
        log.info("broker.reconnected")
        self._mark(True)

    async def close(self) -> None:
        """Close the channel and the connection; a silent broker cannot stall it."""
        self._closing = True
        self._mark(False)
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            # A task of its own: past the timeout the close goes on in the background instead of
            # being cancelled half-way, which would leave aio-pika to schedule it again from
            # ``__del__`` (a coroutine never awaited when no loop runs then).
            closing = asyncio.ensure_future(connection.close())
            try:
                async with asyncio.timeout(self._timeout):
                    await asyncio.shield(closing)
            except TimeoutError:
                log.warning("broker.close_timeout")
        log.info("broker.closed")

    async def _publish(self, message: Outgoing, deadline: float) -> None:
        channel = self._channel  # read after the gate: the connection may have gone meanwhile
        if channel is None or not self.is_ready:
            raise publish_failed(message.exchange, "disconnected")
        left = deadline - self._loop.time()
        if left <= 0:
            raise publish_failed(message.exchange, "timeout")
        properties = persistent_properties(
            message_id=message.message_id, headers=dict(message.headers), content_type=CONTENT_TYPE
        )
        await publish_frames(
            channel, message.exchange, message.routing_key, message.body, properties, timeout=left
        )


def aio_pika_broker_ctx(connection_name: str) -> CleanupContext:
    """A cleanup_ctx: connect in the background (503 until ready), close at the end."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[BROKER] = broker = AioPikaBroker(app[SETTINGS], connection_name=connection_name)
        async for _ in run_publisher(broker):
            yield

    return ctx
