"""A publish-only AMQP 0-9-1 connection: one channel in confirm mode, writes coalesced per tick.

Why not aio-pika's ``Exchange.publish`` or aiormq's ``basic_publish``: on the webhook hot path
they cost more CPU than the rest of the request (a channel lock, a write queue and a writer
task, a drain and a timeout object per message, pamqp objects per field). This protocol keeps
the same guarantees with none of that:

- persistent, mandatory publishes on a channel in confirm mode; a future per delivery tag,
  resolved by Basic.Ack (``multiple`` honoured) and failed by Basic.Nack;
- a Basic.Return fails the publish it names by message id (the broker sends it before the
  ack); the caller serialises publishes that share a message id, so the name is unambiguous;
- a lost connection, a closed channel, a blocked connection or a full socket buffer fails the
  affected publishes at once; the caller's deadline covers a peer that goes silent;
- every publish made in one event-loop tick leaves in one write. While publishes already
  written still await their confirm, new ones wait up to ``batch_window`` to leave together
  (Nagle's idea, on confirms): under load the broker takes fewer, larger writes and spends less
  CPU per message, and a publish made with nothing in flight is not delayed at all.

It speaks to the broker through pamqp, aio-pika's own codec, except for the publish frames
(``ingress.amqp_wire``). Topology is declared with aio-pika before this connection opens.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import cast

import structlog
from pamqp import commands as spec
from pamqp.common import FieldTable
from pamqp.header import ContentHeader

from ingress.amqp_wire import (
    HEARTBEAT_FRAME,
    PROTOCOL_HEADER,
    FrameReader,
    FramingError,
    InboundFrame,
    Outgoing,
    PublishEncoder,
    marshal,
)
from shared.amqp_url import AmqpUrl

log = structlog.get_logger("ingress.publisher")

CHANNEL = 1
DEFAULT_FRAME_MAX = 131_072
MAX_UNCONFIRMED = 100_000  # beyond this the broker is not keeping up: refuse, don't buffer


class PublishRefused(Exception):
    """A publish that was not confirmed; ``outcome`` is the metric label and the 503 reason."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


# Where, as whom and how to connect: AMQP_URL as every process reads it. The TLS options build
# the context aiormq builds, and ``auth`` picks the login (PLAIN, or EXTERNAL: the certificate).
Endpoint = AmqpUrl


class ConfirmPublisher(asyncio.Protocol):
    """The connection's protocol; ``ready`` resolves once the channel is in confirm mode."""

    def __init__(
        self,
        endpoint: Endpoint,
        connection_name: str,
        content_type: str,
        on_ready: Callable[[bool], None],
        batch_window: float = 0.0,
    ) -> None:
        self._endpoint = endpoint
        self._batch_window = batch_window
        self._connection_name = connection_name
        self._content_type = content_type
        self._on_ready = on_ready
        self._loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = self._loop.create_future()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._transport: asyncio.Transport | None = None
        self._frames = FrameReader()
        self._encoder: PublishEncoder | None = None
        self._channel_open = False
        self._blocked = False
        self._paused = False
        # Unconfirmed publishes in tag order, oldest first: a multiple ack or nack pops from the
        # front, so its work is what it settles, however many tags were acked singly before.
        self._pending: OrderedDict[int, tuple[asyncio.Future[None], str]] = OrderedDict()
        self._tag_by_message_id: dict[str, int] = {}
        self._tag = 0
        self._returning = False
        self._out: list[bytes] = []
        self._held: asyncio.TimerHandle | None = None  # the flush of a batch held back
        self._written_tag = 0  # the last delivery tag handed to the socket
        self._heartbeat = 0
        self._heartbeat_timer: asyncio.TimerHandle | None = None
        self._last_sent = self._last_received = self._loop.time()

    @property
    def is_ready(self) -> bool:
        """True while the channel is open in confirm mode and the broker takes publishes."""
        return self._channel_open and not self._blocked and self._transport is not None

    # --- publishing -------------------------------------------------------------------------

    def publish(self, message: Outgoing) -> asyncio.Future[None]:
        """Queue one publish for this tick's write; the future resolves on the broker's ack."""
        if not self._channel_open or self._transport is None or self._encoder is None:
            raise PublishRefused("disconnected")
        if self._blocked:
            raise PublishRefused("blocked")
        if self._paused or len(self._pending) >= MAX_UNCONFIRMED:
            raise PublishRefused("backpressure")
        frames = self._encoder.encode(message)
        message_id = message.message_id
        self._tag += 1
        confirmed: asyncio.Future[None] = self._loop.create_future()
        self._pending[self._tag] = (confirmed, message_id)
        self._tag_by_message_id[message_id] = self._tag
        self._send(frames)
        return confirmed

    def _send(self, data: bytes) -> None:
        if not self._out:
            if self._batch_window and self._awaiting_confirms():
                self._held = self._loop.call_later(self._batch_window, self._flush)
            else:
                self._loop.call_soon(self._flush)
        self._out.append(data)

    def _awaiting_confirms(self) -> bool:
        """Whether a publish already written is still unconfirmed."""
        pending = self._pending  # in tag order: the first key is the oldest unconfirmed tag
        return bool(pending) and next(iter(pending)) <= self._written_tag

    def _flush(self) -> None:
        if self._held is not None:
            self._held.cancel()
            self._held = None
        out, self._out = self._out, []
        if not out:  # an earlier flush this tick (a control frame's) took it all
            return
        self._written_tag = self._tag
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))
            self._last_sent = self._loop.time()

    def _settle(self, tag: int, multiple: bool, outcome: str | None) -> None:
        pending, by_id = self._pending, self._tag_by_message_id
        if multiple:
            if tag == 0:  # the spec's "every outstanding message"
                tag = self._tag
            covered: list[int] = []
            for each in pending:  # oldest first: stop at the first one not covered
                if each > tag:
                    break
                covered.append(each)
            tags: list[int] | tuple[int] = covered
        else:
            tags = (tag,)
        for each in tags:
            entry = pending.pop(each, None)
            if entry is None:
                continue
            confirmed, message_id = entry
            if by_id.get(message_id) == each:
                del by_id[message_id]
            if not confirmed.done():
                if outcome is None:
                    confirmed.set_result(None)
                else:
                    confirmed.set_exception(PublishRefused(outcome))

    def _fail_all(self, outcome: str) -> None:
        pending, self._pending = self._pending, OrderedDict()
        self._tag_by_message_id.clear()
        self._tag, self._written_tag = 0, 0
        for confirmed, _ in pending.values():
            if not confirmed.done():
                confirmed.set_exception(PublishRefused(outcome))

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._transport.write(PROTOCOL_HEADER)

    def data_received(self, data: bytes) -> None:
        self._last_received = self._loop.time()
        try:
            for channel, frame in self._frames.feed(data):
                self._dispatch(channel, frame)
        except FramingError as exc:
            log.error("broker.protocol_error", error=str(exc))
            self.abort()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
        if self._held is not None:
            self._held.cancel()
            self._held = None
        was_open = self._channel_open
        self._channel_open = False
        self._fail_all("disconnected")
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("the broker closed the connection"))
        if not self.closed.done():
            self.closed.set_result(None)
        if was_open:
            self._on_ready(False)

    # --- inbound frames ---------------------------------------------------------------------

    def _dispatch(self, channel: int, frame: InboundFrame) -> None:
        if isinstance(frame, spec.Basic.Ack):
            self._settle(frame.delivery_tag, frame.multiple, None)
        elif isinstance(frame, spec.Basic.Nack):
            self._settle(frame.delivery_tag, frame.multiple, "nacked")
        elif isinstance(frame, spec.Basic.Return):
            self._returning = True
        elif isinstance(frame, ContentHeader):
            if self._returning:
                self._returning = False
                self._returned(frame.properties.message_id or "")
        elif isinstance(frame, spec.Connection.Blocked):
            self._set_blocked(True, frame.reason)
        elif isinstance(frame, spec.Connection.Unblocked):
            self._set_blocked(False, "")
        elif isinstance(frame, spec.Channel.Close):
            self._channel_closed(channel, frame)
        elif isinstance(frame, spec.Connection.Close):
            log.warning("broker.connection_closed", code=frame.reply_code, text=frame.reply_text)
            self._write_now(marshal(spec.Connection.CloseOk(), 0))
            if not self.ready.done():
                self.ready.set_exception(ConnectionRefusedError(frame.reply_text))
            self.abort(graceful=True)
        elif isinstance(frame, spec.Connection.CloseOk):
            self.abort(graceful=True)
        else:
            self._handshake(frame)

    def _handshake(self, frame: InboundFrame) -> None:
        if isinstance(frame, spec.Connection.Start):
            mechanism = self._endpoint.auth
            if mechanism not in frame.mechanisms.split():
                raise FramingError(f"the broker offers no {mechanism} login ({frame.mechanisms})")
            properties: FieldTable = {
                "connection_name": self._connection_name,
                "product": "recon-ingress",
                "capabilities": {
                    "publisher_confirms": True,
                    "basic.nack": True,
                    "connection.blocked": True,
                    "authentication_failure_close": True,
                },
            }
            login = spec.Connection.StartOk(properties, mechanism, self._endpoint.sasl_response())
            self._write_now(marshal(login, 0))
        elif isinstance(frame, spec.Connection.Tune):
            self._tune(frame)
        elif isinstance(frame, spec.Connection.OpenOk):
            self._write_now(marshal(spec.Channel.Open(), CHANNEL))
        elif isinstance(frame, spec.Channel.OpenOk):
            self._write_now(marshal(spec.Confirm.Select(), CHANNEL))
        elif isinstance(frame, spec.Confirm.SelectOk):
            self._channel_open = True
            if self.ready.done():
                log.info("broker.channel_reopened")
            else:
                self.ready.set_result(None)
            self._on_ready(self.is_ready)
        # Heartbeats and anything else need no answer: data_received already noted the traffic.

    def _tune(self, tune: spec.Connection.Tune) -> None:
        frame_max = min(tune.frame_max or DEFAULT_FRAME_MAX, DEFAULT_FRAME_MAX)
        # The URL's heartbeat as it is, whatever the broker proposed: aiormq does the same, so
        # ?heartbeat= means one thing to every process (and 0 turns heartbeats off).
        self._heartbeat = self._endpoint.heartbeat
        self._encoder = PublishEncoder(CHANNEL, frame_max, self._content_type)
        self._write_now(
            marshal(spec.Connection.TuneOk(tune.channel_max, frame_max, self._heartbeat), 0)
            + marshal(spec.Connection.Open(self._endpoint.vhost), 0)
        )
        if self._heartbeat:
            self._heartbeat_timer = self._loop.call_later(self._heartbeat / 2, self._beat)

    def _returned(self, message_id: str) -> None:
        tag = self._tag_by_message_id.pop(message_id, None)
        entry = None if tag is None else self._pending.get(tag)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(PublishRefused("returned"))

    def _set_blocked(self, blocked: bool, reason: str) -> None:
        self._blocked = blocked
        if blocked:
            log.warning("broker.blocked", reason=reason)
        else:
            log.info("broker.unblocked")
        self._on_ready(self.is_ready)

    def _channel_closed(self, channel: int, frame: spec.Channel.Close) -> None:
        """The broker closed our channel (a missing exchange, say): fail what is open, reopen."""
        log.warning("broker.channel_closed", code=frame.reply_code, text=frame.reply_text)
        self._channel_open = False
        self._fail_all("disconnected")
        self._on_ready(False)
        reopen = marshal(spec.Channel.Open(), CHANNEL)
        self._write_now(marshal(spec.Channel.CloseOk(), channel) + reopen)

    # --- connection upkeep ------------------------------------------------------------------

    def _write_now(self, data: bytes) -> None:
        self._send(data)
        self._flush()

    def _beat(self) -> None:
        now = self._loop.time()
        if now - self._last_received > 2 * self._heartbeat:
            log.warning("broker.heartbeat_missed", seconds=round(now - self._last_received, 1))
            self.abort()
            return
        if now - self._last_sent >= self._heartbeat / 2:
            self._write_now(HEARTBEAT_FRAME)
        self._heartbeat_timer = self._loop.call_later(self._heartbeat / 2, self._beat)

    def abort(self, *, graceful: bool = False) -> None:
        """Drop the connection: at once, or once what is buffered has been written."""
        if self._transport is not None:
            if graceful:
                self._transport.close()  # after what is buffered, e.g. our CloseOk
            else:
                self._transport.abort()

    async def close(self, timeout: float) -> None:
        """Connection.Close, then wait up to ``timeout`` for the broker's CloseOk."""
        if self._transport is None:
            return
        self._channel_open = False
        self._write_now(marshal(spec.Connection.Close(200, "ingress shutting down", 0, 0), 0))
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self.closed)
        except TimeoutError:
            self.abort()


async def open_publisher(
    endpoint: Endpoint,
    *,
    connection_name: str,
    content_type: str,
    on_ready: Callable[[bool], None],
    batch_window: float = 0.0,
) -> ConfirmPublisher:
    """Connect and wait until the channel is in confirm mode; the caller bounds the wait."""
    loop = asyncio.get_running_loop()
    # Built per connection, off the loop (it reads the certificate files), as aiormq does.
    context = await loop.run_in_executor(None, endpoint.ssl_context) if endpoint.tls else None
    _, publisher = await loop.create_connection(
        lambda: ConfirmPublisher(endpoint, connection_name, content_type, on_ready, batch_window),
        endpoint.host,
        endpoint.port,
        ssl=context,
    )
    try:
        await publisher.ready
    except BaseException:
        publisher.abort()
        raise
    return publisher
