"""Every HTTP server of the service: slow or silent clients are cut off, broken HTTP gets a 400.

Why this exists: aiohttp closes an idle kept-alive connection (``keepalive_timeout``) but puts
no deadline on the request head itself. A client that opens a connection and sends nothing, or
trickles its headers in a byte at a time (slowloris), holds that connection, and a slot in every
proxy in front of it, for as long as it likes. And a request the parser rejects is logged at
ERROR with a traceback and answered with the parser's message, which quotes the offending bytes
back to whoever sent them. So every server runs ``GuardedAppRunner`` instead of ``AppRunner``:

- head deadline (HTTP_HEADER_TIMEOUT_SECONDS): from the moment a connection opens, or the first
  byte of a later request on a kept-alive one, the request line and headers must be complete
  within the deadline, or the connection is closed (phase ``idle`` if nothing came at all,
  ``header`` otherwise);
- keep-alive (HTTP_KEEPALIVE_TIMEOUT_SECONDS): aiohttp's own ``keepalive_timeout``;
- body (HTTP_BODY_TIMEOUT_SECONDS): a handler reads the body with ``read_body`` (or inside
  ``body_deadline``); a client still sending when it expires gets its answer (408) and then the
  connection closes, the rest of the body unread. A body no handler reads is drained for at most
  as long after the answer, then the connection closes;
- a request the parser rejects: 400 with a fixed body, one WARNING line, never the bytes.

Each cut-off is counted in ``recon_http_client_timeouts_total`` and logged once at WARNING.
The subclasses below lean on aiohttp 3's ``RequestHandler`` internals (its request counter,
message queue and waiter); the tests of this module drive real sockets against them.
"""

from __future__ import annotations

import asyncio
import json
import signal
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from shared import metrics
from shared.config import HttpServerSettings
from shared.event_loop import new_event_loop

log = structlog.get_logger("http")

Listener = Literal["public", "admin"]
PROBLEM_JSON = "application/problem+json"
ADMIN_SHUTDOWN_SECONDS = 2.0  # health checks and scrapes are quick: no long grace needed


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The deadlines of one server; ``server`` labels its metrics (public or admin)."""

    server: Listener
    header_timeout: float
    body_timeout: float
    keepalive_timeout: float

    @classmethod
    def from_settings(cls, settings: HttpServerSettings, server: Listener = "public") -> HttpLimits:
        return cls(
            server=server,
            header_timeout=settings.http_header_timeout_seconds,
            body_timeout=settings.http_body_timeout_seconds,
            keepalive_timeout=settings.http_keepalive_timeout_seconds,
        )


def _peer(transport: asyncio.BaseTransport | None) -> str | None:
    """The client's address (host only), for the log line."""
    peername = transport.get_extra_info("peername") if transport is not None else None
    return str(peername[0]) if isinstance(peername, tuple) and peername else None


def _count_cut_off(server: str, phase: str, timeout: float, peer: str | None, **extra: Any) -> None:
    metrics.HTTP_CLIENT_TIMEOUTS.labels(server, phase).inc()
    log.warning(
        "http.client_timeout",
        server=server,
        phase=phase,
        timeout_seconds=timeout,
        peer=peer,
        **extra,
    )


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection protocol with a head deadline and a quiet 400 for broken HTTP."""

    __slots__ = ("_end_after_response", "_head_started", "_head_timer", "_limits")

    def __init__(self, manager: web.Server, *, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = False  # some bytes of the awaited head arrived (else: idle)
        self._end_after_response = False

    @property
    def limits(self) -> HttpLimits:
        return self._limits

    # --- the head deadline ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_head_timer(started=False)

    def data_received(self, data: bytes) -> None:
        heads = self._request_count  # counts every parsed head, broken ones too
        super().data_received(data)
        if self._request_count != heads:
            self._disarm_head_timer()  # a whole head arrived: the handler takes it from here
        elif not data:
            return
        elif self._head_timer is not None:
            self._head_started = True  # part of the awaited head
        elif self._awaiting_head():
            self._arm_head_timer(started=True)  # the next request on a kept-alive connection

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _awaiting_head(self) -> bool:
        """True while the connection waits for the next request head (not within a request)."""
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def _arm_head_timer(self, *, started: bool) -> None:
        self._head_started = started
        self._head_timer = self._loop.call_later(self._limits.header_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._force_close or self.transport is None:
            return
        if self._messages or self._request_in_progress:
            return  # a head did arrive (the timer is disarmed then; this is a safety net)
        phase = "header" if self._head_started else "idle"
        _count_cut_off(
            self._limits.server, phase, self._limits.header_timeout, _peer(self.transport)
        )
        self.force_close()

    # --- the body deadline's end of the connection ---------------------------------------------
    def end_after_response(self) -> None:
        """Close the connection once the current answer is written; drain no more body."""
        self._end_after_response = True

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        if self._end_after_response:
            resp.force_close()  # "Connection: close" on the answer
        answered = await super().finish_response(request, resp, start_time)
        if self._end_after_response:
            self.force_close()  # no lingering read of the body the client is still trickling
        return answered

    # --- broken HTTP ---------------------------------------------------------------------------
    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The parser's refusals: 400 with a fixed body and a WARNING line, never the bytes.

        aiohttp would log them at ERROR with a traceback and answer with the parser's message,
        which quotes the request. Anything else (a handler's bug: 500) keeps aiohttp's handling.
        """
        if not isinstance(exc, HttpProcessingError) or not 400 <= status < 500:
            return super().handle_error(request, status, exc, message)
        metrics.HTTP_MALFORMED_REQUESTS.labels(self._limits.server).inc()
        log.warning(
            "http.malformed_request",
            server=self._limits.server,
            status=status,
            error=type(exc).__name__,  # BadStatusLine, InvalidHeader, LineTooLong...
            peer=_peer(self.transport),
        )
        if request.writer.output_size > 0:  # as aiohttp: an answer already left, none can follow
            raise ConnectionError("a response was already sent")
        title = HTTPStatus(status).phrase
        detail = "the request is not valid HTTP/1.1"
        body = {
            "type": "about:blank",
            "title": title,
            "status": status,
            "detail": detail,
            "error": "malformed_request",
            "message": detail,
        }
        response = web.Response(status=status, text=json.dumps(body), content_type=PROBLEM_JSON)
        response.force_close()
        return response


class GuardedServer(web.Server):
    """aiohttp's Server, handing each connection a ``GuardedRequestHandler``."""

    def __init__(self, plain: web.Server, limits: HttpLimits) -> None:
        # Built from the server aiohttp made for the app: same handler, factory and options.
        super().__init__(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )
        self._limits = limits

    def __call__(self) -> GuardedRequestHandler:
        return GuardedRequestHandler(self, limits=self._limits, loop=self._loop, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """An AppRunner whose connections carry ``limits``: use it wherever AppRunner would go."""

    __slots__ = ("_limits",)

    def __init__(self, app: web.Application, limits: HttpLimits, **kwargs: Any) -> None:
        kwargs.setdefault("access_log", None)
        super().__init__(
            app,
            keepalive_timeout=limits.keepalive_timeout,
            # A body no handler read is drained after the answer (to keep the connection): for
            # no longer than a body may take at all.
            lingering_time=limits.body_timeout,
            **kwargs,
        )
        self._limits = limits

    async def _make_server(self) -> web.Server:
        return GuardedServer(await super()._make_server(), self._limits)


# --- request bodies --------------------------------------------------------------------------
class BodyTimeout(Exception):
    """The client did not finish sending the body in time: answer 408 (the connection closes)."""

    status = 408


class body_deadline:  # named like asyncio.timeout, which it wraps
    """``async with body_deadline(request, timeout):`` read the body inside the block.

    Past ``timeout`` seconds the block raises ``BodyTimeout``: the cut-off is counted and logged
    (no request bytes), and the connection closes once the caller's answer is written. Only the
    block's own deadline becomes BodyTimeout: a TimeoutError raised by something else inside
    passes through unchanged. A body that already arrived whole (the usual small one) costs no
    timer.
    """

    __slots__ = ("_deadline", "_request", "_timeout")

    def __init__(self, request: web.Request, timeout: float) -> None:
        self._request = request
        self._timeout = timeout
        self._deadline: asyncio.Timeout | None = None

    async def __aenter__(self) -> None:
        if not self._request.content.is_eof():
            self._deadline = asyncio.timeout(self._timeout)
            await self._deadline.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        deadline = self._deadline
        if deadline is None:
            return
        try:
            await deadline.__aexit__(exc_type, exc, tb)
        except TimeoutError as timed_out:
            if not deadline.expired():
                raise
            self._cut_off()
            raise BodyTimeout from timed_out

    def _cut_off(self) -> None:
        request = self._request
        server: str = "public"
        protocol = request.protocol
        if isinstance(protocol, GuardedRequestHandler):
            protocol.end_after_response()
            server = protocol.limits.server
        resource = request.match_info.route.resource
        _count_cut_off(
            server,
            "body",
            self._timeout,
            request.remote,
            route=resource.canonical if resource is not None else None,
        )


async def read_body(request: web.Request, timeout: float) -> bytes:
    """The whole request body, which the client must finish sending within ``timeout`` seconds.

    Raises ``BodyTimeout`` past it (answer 408); aiohttp's own errors pass through unchanged
    (``web.HTTPRequestEntityTooLarge`` beyond the app's ``client_max_size``,
    ``web.RequestPayloadError`` for a malformed chunked or compressed body).
    """
    async with body_deadline(request, timeout):
        return await request.read()


# --- running a server ------------------------------------------------------------------------
async def serve(
    app: web.Application, host: str, port: int, limits: HttpLimits, *, shutdown_timeout: float
) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then shut down as ``web.run_app`` does.

    Stop listening, run on_shutdown, give requests in flight ``shutdown_timeout`` seconds,
    then run the cleanup contexts.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = GuardedAppRunner(app, limits, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        await stop.wait()
    finally:
        await runner.cleanup()


def run(
    app: web.Application, host: str, port: int, limits: HttpLimits, *, shutdown_timeout: float
) -> None:
    """``serve`` on the service's event loop, from a synchronous entrypoint."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve(app, host, port, limits, shutdown_timeout=shutdown_timeout))


def run_stand_in(app: web.Application, host: str, port: int) -> None:
    """aiohttp's own ``run_app`` on the service's event loop, for the local sandbox and demo shop.

    They face only this machine, so they skip the guarded runner's limits.
    """
    web.run_app(app, host=host, port=port, print=None, shutdown_timeout=5.0, loop=new_event_loop())
