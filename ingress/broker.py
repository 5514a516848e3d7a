"""The ingress's RabbitMQ side: topology with aio-pika, then one publish-only confirm connection.

Publishes go through ``ingress.publisher`` (persistent, mandatory, publisher confirms, returns
and nacks raised as errors) rather than aio-pika's ``Exchange.publish``: the guarantees are the
same and the webhook path spends a fraction of the CPU. A lost connection is re-established
(topology declared again first), at once and then after pauses that grow from
AMQP_RECONNECT_INTERVAL_SECONDS to AMQP_RECONNECT_MAX_SECONDS, jittered so that several ingresses
cut off together do not come back in step; meanwhile publishes fail at once with 503.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from contextlib import suppress

import structlog
from aiohttp import web

from ingress.amqp_wire import Outgoing
from ingress.keys import BROKER, SETTINGS
from ingress.publisher import ConfirmPublisher, Endpoint, PublishRefused, open_publisher
from ingress.publishing import PublisherBase, run_publisher
from shared.config import PublisherSettings
from shared.messaging import (
    confirmed_metrics,
    connect,
    declare_topology,
    publish_failed,
)

log = structlog.get_logger("ingress.broker")

CONNECTION_NAME = "recon-ingress"
CONTENT_TYPE = "application/json"


class Broker(PublisherBase):
    """Owns the publishing connection; publishes with a bounded wait."""

    def __init__(self, settings: PublisherSettings) -> None:
        super().__init__(settings)
        self._endpoint = Endpoint.from_url(settings.amqp_url.reveal())
        self._publisher: ConfirmPublisher | None = None
        # Publishes awaiting their confirm, oldest first: one timeout for all, so deadlines
        # arrive in order and one timer serves them all (a timer per publish costs more).
        self._deadlines: collections.deque[tuple[float, asyncio.Future[None]]] = collections.deque()
        self._expiry: asyncio.TimerHandle | None = None
        self._confirmed: list[tuple[str, float]] = []  # (exchange, seconds) not yet counted
        self._reconnecting: asyncio.Task[None] | None = None

    @property
    def is_ready(self) -> bool:
        """True while the confirm channel is open and the broker takes publishes."""
        return self._publisher is not None and self._publisher.is_ready

    async def _connect_once(self) -> None:
        connection = await connect(self.settings.amqp_url.reveal(), name=f"{CONNECTION_NAME}-setup")
        try:
            await declare_topology(await connection.channel(), self.settings)
        finally:
            await connection.close()
        publisher = await open_publisher(
            self._endpoint,
            connection_name=CONNECTION_NAME,
            content_type=CONTENT_TYPE,
            on_ready=self._mark,
            batch_window=self.settings.amqp_publish_batch_window_seconds,
        )
        publisher.closed.add_done_callback(lambda _: self._lost(publisher))
        self._publisher = publisher
        self._mark(publisher.is_ready)

    def _lost(self, publisher: ConfirmPublisher) -> None:
        if self._closing or publisher is not self._publisher:
            return
        log.warning("broker.connection_lost")
        self._publisher = None
        self._mark(False)
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = self._loop.create_task(self.connect(), name="broker-reconnect")

    async def close(self) -> None:
        """Cancel any reconnect, then close the connection; a silent broker cannot stall it."""
        self._closing = True
        self._mark(False)
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with suppress(asyncio.CancelledError):
                await self._reconnecting
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            await publisher.close(self._timeout)
        if self._expiry is not None:
            self._expiry.cancel()
        log.info("broker.closed")

    def _on_confirmed(self, exchange: str, seconds: float) -> None:
        """Counted once per tick, per exchange: one increment per publish costs more."""
        if not self._confirmed:
            self._loop.call_soon(self._count_confirmed)
        self._confirmed.append((exchange, seconds))

    async def _publish(self, message: Outgoing, deadline: float) -> None:
        publisher = self._publisher  # read after the gate: it may have gone meanwhile
        if publisher is None:
            raise publish_failed(message.exchange, "disconnected")
        try:
            confirmed = publisher.publish(message)
            self._expire_at(deadline, confirmed)
            await confirmed
        except PublishRefused as exc:
            raise publish_failed(message.exchange, exc.outcome) from exc

    def _count_confirmed(self) -> None:
        """The confirmed publishes of one tick, counted together (one increment per exchange)."""
        confirmed, self._confirmed = self._confirmed, []
        counts: collections.Counter[str] = collections.Counter()
        for exchange, seconds in confirmed:
            counts[exchange] += 1
            confirmed_metrics(exchange)[1].observe(seconds)
        for exchange, count in counts.items():
            confirmed_metrics(exchange)[0].inc(count)

    def _expire_at(self, deadline: float, confirmed: asyncio.Future[None]) -> None:
        """Fail ``confirmed`` with "timeout" if the broker has not settled it by ``deadline``."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][1].done():  # confirms mostly come in order
            deadlines.popleft()
        deadlines.append((deadline, confirmed))
        if self._expiry is None:
            self._expiry = self._loop.call_at(deadlines[0][0], self._expire_due)

    def _expire_due(self) -> None:
        self._expiry = None
        deadlines, now = self._deadlines, self._loop.time()
        while deadlines:
            deadline, confirmed = deadlines[0]
            if not confirmed.done() and deadline > now:
                self._expiry = self._loop.call_at(deadline, self._expire_due)
                return
            deadlines.popleft()
            if not confirmed.done():
                confirmed.set_exception(PublishRefused("timeout"))


async def broker_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: connect in the background (503 until ready), close channel then connection."""
    app[BROKER] = broker = Broker(app[SETTINGS])
    async for _ in run_publisher(broker):
        yield
