"""The shared request-logging middleware: one line and one count per request, with its context."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from shared.request_logging import LINE, RequestLogging, set_outcome, setup_request_logging


@dataclass
class Counts:
    seen: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def __call__(
        self, endpoint: str, outcome: str, _seconds: float, line: Mapping[str, Any]
    ) -> None:
        self.seen.append((endpoint, outcome, dict(line)))


async def paid(request: web.Request) -> web.Response:
    structlog.get_logger("t").info("handler.step")
    set_outcome(request, "paid", order_reference="ord-1")
    return web.json_response({"ok": True})


async def broken(request: web.Request) -> web.Response:
    request[LINE]["order_reference"] = "ord-2"
    raise RuntimeError("a bug of ours")


async def missing(_request: web.Request) -> web.Response:
    raise web.HTTPNotFound


async def plain(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Counts]]:
    counts = Counts()
    spec = RequestLogging(
        logger="t.requests",
        event="t.request",
        endpoints=frozenset({"paid", "broken", "missing"}),
        count=counts,
        internal_error=lambda: web.json_response({"error": "internal_error"}, status=503),
    )
    app = web.Application()
    setup_request_logging(app, spec)
    app.router.add_get("/paid", paid, name="paid")
    app.router.add_get("/broken", broken, name="broken")
    app.router.add_get("/missing", missing, name="missing")
    app.router.add_get("/plain", plain, name="plain")
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")), counts
    finally:
        await server.close()


async def get(url: str, headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as client, client.get(url, headers=headers) as response:
        await response.read()
    await asyncio.sleep(0)  # the server settles its tick's requests after their responses
    return response


async def test_a_request_ends_in_one_line_with_its_outcome_fields_and_duration(
    served: tuple[str, Counts],
) -> None:
    url, counts = served
    with capture_logs() as lines:
        response = await get(url + "/paid")

    (line,) = [entry for entry in lines if entry["event"] == "t.request"]
    assert response.status == 200
    assert line["outcome"] == "paid"
    assert line["order_reference"] == "ord-1"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/paid", 200)
    assert line["duration_ms"] >= 0
    assert counts.seen == [("paid", "paid", {"order_reference": "ord-1"})]


async def test_lines_logged_during_the_request_carry_its_request_id_and_endpoint(
    served: tuple[str, Counts],
) -> None:
    url, _ = served
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
        response = await get(url + "/paid")

    step, request_line = lines
    assert step["event"] == "handler.step"
    assert step["request_id"] == request_line["request_id"] == response.headers["X-Request-Id"]
    assert step["endpoint"] == request_line["endpoint"] == "paid"


async def test_new_request_ids_differ_from_request_to_request(served: tuple[str, Counts]) -> None:
    url, _ = served
    ids = {(await get(url + "/paid")).headers["X-Request-Id"] for _ in range(3)}
    assert len(ids) == 3


async def test_a_callers_plain_request_id_is_kept_and_echoed(served: tuple[str, Counts]) -> None:
    url, _ = served
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
        response = await get(url + "/paid", {"X-Request-Id": "shop-42.a"})

    assert response.headers["X-Request-Id"] == "shop-42.a"
    assert lines[-1]["request_id"] == "shop-42.a"


async def test_a_request_id_that_is_not_a_plain_token_is_replaced(
    served: tuple[str, Counts],
) -> None:
    url, _ = served
    response = await get(url + "/paid", {"X-Request-Id": "x\u00e9<script>" + "a" * 80})
    assert response.headers["X-Request-Id"].isalnum()
    assert len(response.headers["X-Request-Id"]) == 24


async def test_an_unhandled_exception_gets_the_apps_answer_and_an_error_line_with_traceback(
    served: tuple[str, Counts],
) -> None:
    url, counts = served
    with capture_logs() as lines:
        response = await get(url + "/broken")

    assert response.status == 503
    (line,) = lines
    assert line["log_level"] == "error"
    assert isinstance(line["exc_info"], RuntimeError)
    assert (line["outcome"], line["reason"], line["status"]) == (
        "internal_error",
        "RuntimeError",
        503,
    )
    assert line["order_reference"] == "ord-2"
    assert counts.seen[0][:2] == ("broken", "internal_error")


async def test_an_http_exception_without_an_outcome_is_counted_by_its_status(
    served: tuple[str, Counts],
) -> None:
    url, counts = served
    with capture_logs() as lines:
        response = await get(url + "/missing")

    assert response.status == 404
    assert lines[0]["outcome"] == "http_404"
    assert counts.seen == [("missing", "http_404", {})]


async def test_routes_outside_the_endpoints_are_neither_logged_nor_counted(
    served: tuple[str, Counts],
) -> None:
    url, counts = served
    with capture_logs() as lines:
        response = await get(url + "/plain")

    assert response.status == 200
    assert lines == []
    assert counts.seen == []


async def test_lines_are_written_after_the_tick_that_answered_and_all_are_settled_at_cleanup() -> (
    None
):
    counts = Counts()
    spec = RequestLogging("t", "t.request", frozenset({"paid"}), counts, web.Response)
    app = web.Application()
    setup_request_logging(app, spec)
    app.router.add_get("/paid", paid, name="paid")
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    with capture_logs() as lines:
        async with aiohttp.ClientSession() as client, client.get(server.make_url("/paid")) as r:
            await r.read()
        await server.close()  # the cleanup settles whatever is left

    assert [line["event"] for line in lines].count("t.request") == 1
