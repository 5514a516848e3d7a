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
from collections.abc import AsyncIterator, Mapping
from contextlib import suppress
from typing import Any

import structlog
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aiohttp import web

from ingress.keys import BROKER, SETTINGS
from ingress.publishing import CleanupContext, HeaderValue, connect_until_up
from ingress.same_id import SameIdGate
from shared import metrics
from shared.config import PublisherSettings
from shared.messaging import (
    Names,
    connect_robust,
    declare_topology,
    open_channel,
    persistent_properties,
    publish_failed,
    publish_frames,
    reconnect_backoff,
)

log = structlog.get_logger("ingress.broker")

CONTENT_TYPE = "application/json"


class AioPikaBroker:
    """Owns the robust connection and its confirm channel; publishes with a bounded wait."""

    def __init__(self, settings: PublisherSettings, *, connection_name: str) -> None:
        self.settings = settings
        self.names = Names.from_settings(settings)
        self._connection_name = connection_name
        self._timeout = settings.amqp_publish_timeout_seconds
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._up = asyncio.Event()  # the connection is open (set again when it comes back)
        self.same_id = SameIdGate()
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._backoff = reconnect_backoff(settings)

    @property
    def is_ready(self) -> bool:
        """True while the connection and its confirm channel are open."""
        channel = self._channel
        return self._up.is_set() and channel is not None and not channel.is_closed

    async def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the channel to be open."""
        try:
            async with asyncio.timeout(timeout):
                await self._up.wait()
        except TimeoutError:
            return False
        return self.is_ready

    async def connect(self) -> None:
        """Connect, open the confirm channel and declare the topology; retry until all work."""
        await connect_until_up(self._connect_once, self._backoff, lambda: self._closing)

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

    def _mark(self, up: bool) -> None:
        metrics.BROKER_CONNECTED.set(1 if up else 0)
        if up:
            self._up.set()
        else:
            self._up.clear()

    async def close(self) -> None:
        """Close the channel and the connection; a silent broker cannot stall it."""
        self._closing = True
        self._mark(False)
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                async with asyncio.timeout(self._timeout):
                    await connection.close()
            except TimeoutError:
                log.warning("broker.close_timeout")
        log.info("broker.closed")

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: Mapping[str, HeaderValue],
    ) -> None:
        """Publish persistent and mandatory, await the confirm; raise PublishError otherwise.

        Never waits longer than AMQP_PUBLISH_TIMEOUT_SECONDS in all.
        """
        deadline = self._loop.time() + self._timeout

        async def send() -> None:
            await self._publish(exchange, routing_key, body, message_id, headers, deadline)

        await self.same_id.publish(
            message_id, exchange, routing_key, body, deadline=deadline, send=send
        )

    async def _publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        message_id: str,
        headers: Mapping[str, HeaderValue],
        deadline: float,
    ) -> None:
        channel = self._channel  # read after the gate: the connection may have gone meanwhile
        if channel is None or not self.is_ready:
            raise publish_failed(exchange, "disconnected")
        left = deadline - self._loop.time()
        if left <= 0:
            raise publish_failed(exchange, "timeout")
        properties = persistent_properties(
            message_id=message_id, headers=dict(headers), content_type=CONTENT_TYPE
        )
        await publish_frames(channel, exchange, routing_key, body, properties, timeout=left)


def aio_pika_broker_ctx(connection_name: str) -> CleanupContext:
    """A cleanup_ctx: connect in the background (503 until ready), close at the end."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        broker = AioPikaBroker(app[SETTINGS], connection_name=connection_name)
        app[BROKER] = broker
        connecting = asyncio.create_task(broker.connect(), name="broker-connect")
        yield
        connecting.cancel()
        with suppress(asyncio.CancelledError):
            await connecting
        await broker.close()

    return ctx
