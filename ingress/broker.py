"""The ingress's RabbitMQ side: a robust connection, one confirm channel, confirmed publishes.

The hot path publishes through aiormq's ``basic_publish`` (the layer under aio-pika's
``Exchange.publish``) with prebuilt properties: the same AMQP guarantees (persistent, mandatory,
publisher confirm, returns raised as errors) for far fewer Python objects per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aiohttp import web
from pamqp.commands import Basic
from yarl import URL

from ingress.keys import BROKER, SETTINGS
from shared import metrics
from shared.config import Settings
from shared.errors import PublishError
from shared.messaging import Names, declare_topology, open_channel, publish_failed, publish_frames

log = structlog.get_logger("ingress.broker")


class Broker:
    """Owns the connection and the confirm channel; publishes with a bounded wait."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names = Names.from_settings(settings)
        self.connection: AbstractRobustConnection | None = None
        self.channel: AbstractRobustChannel | None = None
        self._ready = asyncio.Event()
        self._in_flight: dict[str, list[asyncio.Future[None]]] = {}
        self._timeout = settings.amqp_publish_timeout_seconds
        self._loop = asyncio.get_running_loop()

    @property
    def is_ready(self) -> bool:
        """True while the confirm channel is open."""
        return self.channel is not None and not self.channel.is_closed

    async def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the channel to be open."""
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            return False
        return self.is_ready

    async def connect(self) -> None:
        """Connect, open the channel and declare the topology; retry until it all works."""
        interval = self.settings.amqp_reconnect_interval_seconds
        while True:
            try:
                await self._connect_once()
            except Exception as exc:  # any failure to reach or set up the broker: retry
                log.warning("broker.connect_failed", error=type(exc).__name__, retry_in=interval)
                await self._close_connection()
                await asyncio.sleep(interval)
                continue
            log.info("broker.connected")
            return

    async def _connect_once(self) -> None:
        # Built before connecting so that a cancelled start-up can still close it.
        connection = aio_pika.RobustConnection(
            URL(self.settings.amqp_url.reveal()),
            reconnect_interval=self.settings.amqp_reconnect_interval_seconds,
            client_properties={"connection_name": "recon-ingress"},
        )
        self.connection = connection
        await connection.connect(timeout=self._timeout)
        channel = await open_channel(connection)
        assert isinstance(channel, AbstractRobustChannel)
        await declare_topology(channel, self.settings)
        channel.close_callbacks.add(self._on_channel_closed)
        channel.reopen_callbacks.add(self._on_channel_reopened)
        self.channel = channel
        self._mark(connected=True)

    def _on_channel_closed(self, *_: Any) -> None:
        log.warning("broker.channel_closed")
        self._mark(connected=False)

    def _on_channel_reopened(self, *_: Any) -> None:
        log.info("broker.channel_reopened")
        self._mark(connected=True)

    def _mark(self, *, connected: bool) -> None:
        metrics.BROKER_CONNECTED.set(1 if connected else 0)
        if connected:
            self._ready.set()
        else:
            self._ready.clear()

    async def close(self) -> None:
        """Close the channel, then the connection; a silent broker cannot stall either step."""
        self._mark(connected=False)
        channel, self.channel = self.channel, None
        if channel is not None:
            channel.close_callbacks.discard(self._on_channel_closed)
            if not channel.is_closed:
                with suppress(TimeoutError):
                    async with asyncio.timeout(self._timeout):
                        await channel.close()
        await self._close_connection()
        log.info("broker.closed")

    async def _close_connection(self) -> None:
        connection, self.connection = self.connection, None
        if connection is None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await connection.close()
        except TimeoutError:
            log.warning("broker.close_timed_out")

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, properties: Basic.Properties
    ) -> None:
        """Publish mandatory and await the broker's confirm; raise PublishError otherwise.

        Never waits longer than AMQP_PUBLISH_TIMEOUT_SECONDS in all, whatever the library does.
        """
        channel = self.channel
        if channel is None:
            raise publish_failed(exchange, "disconnected")
        deadline = self._loop.time() + self._timeout
        message_id = properties.message_id or ""
        if message_id in self._in_flight:  # an identical delivery is being published: queue up
            try:
                async with asyncio.timeout_at(deadline):
                    await self._claim(message_id)
            except TimeoutError as exc:
                raise publish_failed(exchange, "timeout") from exc
        else:
            self._in_flight[message_id] = []
        try:
            remaining = deadline - self._loop.time()
            await publish_frames(
                channel, exchange, routing_key, body, properties, timeout=remaining
            )
        except PublishError:
            raise
        except Exception as exc:  # whatever else a dying connection raises: still a 503, not a 500
            raise publish_failed(exchange, "disconnected") from exc
        finally:
            self._release(message_id)

    async def _claim(self, message_id: str) -> None:
        """Wait until no publish with this message_id is in flight on the channel, then take it.

        aiormq maps a Basic.Return back to its publish by message_id, so two publishes sharing
        one in flight can be confused or hang (aio-pika issue #689). Identical deliveries are
        serialised here; each one is still published and confirmed.
        """
        while (waiters := self._in_flight.get(message_id)) is not None:
            waiter = self._loop.create_future()
            waiters.append(waiter)
            await waiter
        self._in_flight[message_id] = []

    def _release(self, message_id: str) -> None:
        for waiter in self._in_flight.pop(message_id):
            if not waiter.done():
                waiter.set_result(None)


async def broker_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: connect in the background (503 until ready), close channel then connection."""
    broker = app[BROKER] = Broker(app[SETTINGS])
    connecting = asyncio.create_task(broker.connect(), name="broker-connect")
    yield
    connecting.cancel()
    with suppress(asyncio.CancelledError):
        await connecting
    await broker.close()
