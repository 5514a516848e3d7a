"""What the ingress apps publish through: one interface, two implementations.

``ingress.broker`` (the custom publish-only connection) and ``ingress.aio_pika_broker`` (aio-pika,
as the worker publishes) keep the same guarantees: persistent, mandatory publishes awaited until
RabbitMQ confirms them, within AMQP_PUBLISH_TIMEOUT_SECONDS; a return, a nack, a timeout or a
lost connection raise PublishError (the apps answer 503). WEBHOOK_PUBLISHER chooses the webhook
ingress's; the checkout's authorize commands always go through aio-pika."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import suppress

import structlog
from aiohttp import web

from ingress.amqp_wire import HeaderValue, Outgoing
from ingress.same_id import SameIdGate
from shared import metrics
from shared.backoff import Backoff
from shared.config import PublisherSettings
from shared.messaging import Names, reconnect_backoff

log = structlog.get_logger("ingress.broker")

CleanupContext = Callable[[web.Application], AsyncIterator[None]]
SETUP_TIMEOUT_SECONDS = 30.0  # connect, declare the topology, open the confirm channel


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


class PublisherBase(ABC):
    """What both publishers share: names, the same-id gate, readiness, the connect loop and the
    one deadline of a publish. Subclasses open the connection (``_connect_once``), tell
    readiness (``is_ready``) and send one message before its deadline (``_publish``)."""

    def __init__(self, settings: PublisherSettings) -> None:
        self.settings = settings
        self.names = Names.from_settings(settings)
        # Publishes sharing a message id: one on the channel at a time, identical ones coalesced.
        self.same_id = SameIdGate()
        self._up = asyncio.Event()  # the channel is open (set again when it comes back)
        self._timeout = settings.amqp_publish_timeout_seconds
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._backoff = reconnect_backoff(settings)

    @property
    @abstractmethod
    def is_ready(self) -> bool:
        """True while publishes can be taken (the readiness check)."""

    async def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the channel to be open."""
        try:
            async with asyncio.timeout(timeout):
                await self._up.wait()
        except TimeoutError:
            return False
        return self.is_ready

    async def connect(self) -> None:
        """Connect, declare the topology and open the confirm channel; retry until all work."""
        await connect_until_up(self._connect_once, self._backoff, lambda: self._closing)

    @abstractmethod
    async def _connect_once(self) -> None:
        """Connect, declare the topology and open the confirm channel, once."""

    @abstractmethod
    async def close(self) -> None:
        """Close the channel and the connection; a silent broker cannot stall it."""

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

        message = Outgoing(exchange, routing_key, body, message_id, headers)

        async def send() -> None:
            await self._publish(message, deadline)

        started = self._loop.time()
        await self.same_id.publish(
            message_id, exchange, routing_key, body, deadline=deadline, send=send
        )
        self._on_confirmed(exchange, self._loop.time() - started)

    @abstractmethod
    async def _publish(self, message: Outgoing, deadline: float) -> None:
        """Send ``message`` and await its confirm before ``deadline``; PublishError otherwise."""

    def _on_confirmed(self, exchange: str, seconds: float) -> None:  # noqa: B027 (a hook)
        """A publish was confirmed after ``seconds`` (for the publishers that count here)."""

    def _mark(self, up: bool) -> None:
        metrics.BROKER_CONNECTED.set(1 if up else 0)
        if up:
            self._up.set()
        else:
            self._up.clear()


async def run_publisher(publisher: PublisherBase) -> AsyncIterator[None]:
    """The body of a publisher's cleanup_ctx: connect in the background (503 until ready),
    close at the end."""
    connecting = asyncio.create_task(publisher.connect(), name="broker-connect")
    yield
    connecting.cancel()
    with suppress(asyncio.CancelledError):
        await connecting
    await publisher.close()
