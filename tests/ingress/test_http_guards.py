"""Slow, silent and broken clients against the webhook ingress, over real sockets.

The ingress runs as ``python -m ingress webhooks`` runs it (GuardedAppRunner) with deadlines of
half a second. A cut-off only has to come before CUT_OFF_FACTOR times its deadline, which leaves
a loaded machine plenty of room; the clients below would go on far longer than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from ingress.keys import BROKER
from ingress.signature import sign
from ingress.webhook_app import WEBHOOK_PATH, create_webhook_app
from shared.http_server import BodyTimeout, GuardedAppRunner, HttpLimits, read_body
from shared.messaging import Names
from tests.ingress.conftest import webhook_body
from tests.ports import free_port
from tests.settings import Settings
from tests.waiting import sample

DEADLINE = 0.5
CUT_OFF_FACTOR = 6
TRICKLE_PAUSE = 0.05  # far shorter than any deadline: an inactivity timer would never fire
NEEDLE = b"needle-7f3a"  # in every byte sent; must never come back or reach a log line
TIMEOUTS = "recon_http_client_timeouts_total"


@dataclass
class Served:
    port: int
    settings: Settings


@contextlib.asynccontextmanager
async def serve_guarded(app: web.Application, settings: Settings) -> AsyncIterator[int]:
    """Serve ``app`` as the processes do, on a free port: the port."""
    runner = GuardedAppRunner(app, HttpLimits.from_settings(settings))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


def guarded(settings: Settings, *, header: float = DEADLINE, keepalive: float = 30.0) -> Settings:
    """Half-second header and body deadlines; keep-alive out of the way unless a test needs it."""
    return settings.model_copy(
        update={
            "http_header_timeout_seconds": header,
            "http_body_timeout_seconds": DEADLINE,
            "http_keepalive_timeout_seconds": keepalive,
        }
    )


@pytest.fixture
async def ingress(ingress_settings: Settings, topology: Names) -> AsyncIterator[Served]:
    """The webhook ingress, ready, served with half-second header and body deadlines."""
    settings = guarded(ingress_settings)
    app = create_webhook_app(settings)
    async with serve_guarded(app, settings) as port:
        assert await app[BROKER].wait_ready(10)
        yield Served(port, settings)


@dataclass
class Ending:
    seconds: float  # from connecting to the server closing the connection
    received: bytes  # everything the server sent before it did


async def _read_until_closed(reader: asyncio.StreamReader) -> bytes:
    received = b""
    try:
        while chunk := await reader.read(65536):
            received += chunk
    except ConnectionResetError:  # the server closed while our bytes were still arriving
        pass
    return received


async def connection_end(
    port: int, head: bytes = b"", trickle: Sequence[bytes] = (), give_up: float = 30.0
) -> Ending:
    """Send ``head`` at once, then ``trickle`` a piece every TRICKLE_PAUSE; wait for the close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = asyncio.get_running_loop().time()

    async def send() -> None:
        try:
            writer.write(head)
            for piece in trickle:
                await writer.drain()
                await asyncio.sleep(TRICKLE_PAUSE)
                writer.write(piece)
            await writer.drain()
        except OSError:  # the server cut us off mid-send
            pass

    sender = asyncio.create_task(send())
    try:
        received = await asyncio.wait_for(_read_until_closed(reader), give_up)
    finally:
        sender.cancel()
        writer.close()
    return Ending(asyncio.get_running_loop().time() - started, received)


def one_byte_at_a_time(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def slow_head() -> list[bytes]:
    """A valid request head, one byte at a time: it would take about 20 s to finish."""
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + NEEDLE + b"a" * 400 + b"\r\n\r\n"
    return one_byte_at_a_time(head)


def slow_body_request(settings: Settings) -> tuple[bytes, list[bytes]]:
    """A signed webhook whose head comes at once and whose body trickles for about 20 s."""
    body = webhook_body(pad=(NEEDLE * 40).decode())
    signature = sign(body, settings.payrails_webhook_keys[0])
    head = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"X-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head, one_byte_at_a_time(body)


def within(ending: Ending, deadline: float) -> bool:
    return ending.seconds < CUT_OFF_FACTOR * deadline


# --- the head deadline -------------------------------------------------------------------------
async def test_a_client_sending_its_headers_slowly_is_cut_off_within_the_header_timeout(
    ingress: Served,
) -> None:
    ending = await connection_end(ingress.port, trickle=slow_head())

    assert within(ending, DEADLINE), ending.seconds
    assert ending.received == b""


async def test_a_connection_that_sends_nothing_is_cut_off_within_the_header_timeout(
    ingress: Served,
) -> None:
    ending = await connection_end(ingress.port)

    assert within(ending, DEADLINE), ending.seconds
    assert ending.received == b""


async def test_a_kept_alive_connection_trickling_its_next_request_is_cut_off(
    ingress: Served,
) -> None:
    first = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    ending = await connection_end(ingress.port, head=first, trickle=slow_head())

    assert within(ending, DEADLINE), ending.seconds
    assert ending.received.startswith(b"HTTP/1.1 200 OK")  # the first one was answered
    assert ending.received.count(b"HTTP/1.1 ") == 1


async def test_a_kept_alive_connection_may_idle_longer_than_the_header_timeout(
    ingress: Served,
) -> None:
    """Between requests the keep-alive timeout applies, not the header deadline."""
    reader, writer = await asyncio.open_connection("127.0.0.1", ingress.port)
    try:
        for _ in range(2):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            status = await asyncio.wait_for(reader.readline(), 10)
            assert status.startswith(b"HTTP/1.1 200"), status
            await asyncio.wait_for(reader.readuntil(b'{"status": "ok"}'), 10)
            await asyncio.sleep(2 * DEADLINE)
    finally:
        writer.close()


async def test_an_idle_kept_alive_connection_is_closed_within_the_keepalive_timeout(
    ingress_settings: Settings, topology: Names
) -> None:
    settings = guarded(ingress_settings, header=30.0, keepalive=DEADLINE)
    async with serve_guarded(create_webhook_app(settings), settings) as port:
        ending = await connection_end(port, head=b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")

        assert within(ending, DEADLINE), ending.seconds
        assert ending.received.startswith(b"HTTP/1.1 200 OK")


# --- the body deadline -------------------------------------------------------------------------
async def test_a_client_sending_the_webhook_body_slowly_gets_408_within_the_body_timeout(
    ingress: Served,
) -> None:
    head, trickle = slow_body_request(ingress.settings)
    before = sample("recon_webhook_requests_total", outcome="timeout")

    ending = await connection_end(ingress.port, head=head, trickle=trickle)

    assert within(ending, DEADLINE), ending.seconds
    assert ending.received.startswith(b"HTTP/1.1 408 Request Timeout")
    assert b"connection: close" in ending.received.lower()
    assert NEEDLE not in ending.received
    assert sample("recon_webhook_requests_total", outcome="timeout") == before + 1


async def test_read_body_cuts_off_a_slow_body_and_returns_a_prompt_one(
    ingress_settings: Settings,
) -> None:
    """The helper the checkout handlers read their bodies with."""
    settings = guarded(ingress_settings)

    async def echo_length(request: web.Request) -> web.Response:
        try:
            body = await read_body(request, settings.http_body_timeout_seconds)
        except BodyTimeout as exc:
            return web.Response(status=exc.status, text="too slow")
        return web.Response(text=str(len(body)))

    app = web.Application()
    app.router.add_post("/echo", echo_length)
    async with serve_guarded(app, settings) as port:
        head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 400\r\n\r\n"
        slow = await connection_end(port, head=head, trickle=one_byte_at_a_time(b"a" * 400))
        closing = head.replace(b"Host: x", b"Host: x\r\nConnection: close")
        prompt = await connection_end(port, head=closing + b"a" * 400)

    assert within(slow, DEADLINE), slow.seconds
    assert slow.received.startswith(b"HTTP/1.1 408 Request Timeout")
    assert b"connection: close" in slow.received.lower()
    assert prompt.received.startswith(b"HTTP/1.1 200 OK")
    assert prompt.received.endswith(b"\r\n\r\n400")


# --- accounting --------------------------------------------------------------------------------
async def test_each_cut_off_is_counted_by_phase_and_logged_once_at_warning_without_its_bytes(
    ingress: Served,
) -> None:
    phases = ("idle", "header", "body")
    before = {phase: sample(TIMEOUTS, server="public", phase=phase) for phase in phases}
    head, trickle = slow_body_request(ingress.settings)

    with capture_logs() as logs:
        await connection_end(ingress.port)
        await connection_end(ingress.port, trickle=slow_head())
        await connection_end(ingress.port, head=head, trickle=trickle)

    for phase in phases:
        assert sample(TIMEOUTS, server="public", phase=phase) == before[phase] + 1, phase
    cut_offs = [line for line in logs if line["event"] == "http.client_timeout"]
    assert [(line["log_level"], line["phase"]) for line in cut_offs] == [
        ("warning", phase) for phase in phases
    ]
    assert NEEDLE.decode() not in repr(logs)


# --- broken HTTP -------------------------------------------------------------------------------
MALFORMED = (
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header<" + NEEDLE + b">\r\n\r\n",
    NEEDLE + b"<script> /webhooks/payrails HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /" + NEEDLE * 1000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /webhooks/payrails HTTP/1.1\r\nHost: x\r\nContent-Length: " + NEEDLE + b"\r\n\r\n",
)


@pytest.mark.parametrize("raw", MALFORMED, ids=["header", "method", "long_line", "length"])
async def test_a_malformed_request_gets_400_without_its_bytes_echoed(
    ingress: Served, raw: bytes
) -> None:
    ending = await connection_end(ingress.port, head=raw)

    assert ending.received.startswith(b"HTTP/1.0 400 Bad Request")
    assert NEEDLE not in ending.received
    assert b'"error": "malformed_request"' in ending.received


async def test_a_malformed_request_is_logged_at_warning_not_as_an_error_with_a_traceback(
    ingress: Served, caplog: pytest.LogCaptureFixture
) -> None:
    before = sample("recon_http_malformed_requests_total", server="public")
    with caplog.at_level(logging.DEBUG), capture_logs() as logs:
        for raw in MALFORMED:
            await connection_end(ingress.port, head=raw)

    refused = [line for line in logs if line["event"] == "http.malformed_request"]
    assert [line["log_level"] for line in refused] == ["warning"] * len(MALFORMED)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    assert NEEDLE.decode() not in repr(logs) + caplog.text
    assert sample("recon_http_malformed_requests_total", server="public") == before + len(MALFORMED)
