"""One request-logging pattern for every HTTP app: request-scoped context and one line each.

``setup_request_logging`` gives each request of the named routes an id (the caller's
``X-Request-Id`` when it is a plain token, else a new one), binds it and the endpoint into
structlog's context for everything logged while the request runs, answers a bug of ours with
the app's own error response, and accounts for the request once: one line and its metrics.
Handlers add what the line should say (at least ``outcome``) to ``request[LINE]``.

The line and the counts are settled at the end of the event-loop tick, after the responses of
that tick have left: run back to back, the same logging and metrics code costs the webhook
ingress much less CPU per request than between the verifying, parsing and publishing of the
next request (the README's logging section has the bench figures).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

# The request's line: ``outcome`` (a closed set, safe as a metric label) and the fields to log.
LINE: web.RequestKey[dict[str, Any]] = web.RequestKey("log_line")
REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True, slots=True)
class RequestLogging:
    """What one app's requests log and count.

    ``count(endpoint, outcome, seconds, line)`` updates the app's metrics; ``internal_error``
    is the answer to an exception no handler translated (a 500 for the checkout, a 503 for
    Payrails' webhooks, so that they are retried).
    """

    logger: str
    event: str
    endpoints: frozenset[str]
    count: Callable[[str, str, float, Mapping[str, Any]], None]
    internal_error: Callable[[], web.StreamResponse]


@dataclass(slots=True)
class _Entry:
    endpoint: str
    request_id: str
    method: str
    path: str
    status: int
    seconds: float
    line: dict[str, Any]
    failure: BaseException | None


class RequestLedger:
    """Collects each request's account; counts and logs them at the end of the tick."""

    def __init__(self, spec: RequestLogging, loop: asyncio.AbstractEventLoop) -> None:
        self._spec = spec
        self._loop = loop
        self._log = structlog.get_logger(spec.logger)
        self._entries: list[_Entry] = []

    def record(self, entry: _Entry) -> None:
        if not self._entries:
            self._loop.call_soon(self.settle)
        self._entries.append(entry)

    def settle(self) -> None:
        """Count and log every request recorded since the last call, in order."""
        entries, self._entries = self._entries, []
        logger = self._log.bind()  # resolve the lazy logger once, not once per line
        for entry in entries:
            line = entry.line
            outcome = line.pop("outcome", None) or f"http_{entry.status}"
            self._spec.count(entry.endpoint, outcome, entry.seconds, line)
            emit = logger.info
            if entry.failure is not None:  # still the request's one line, with the traceback
                emit, line["exc_info"] = logger.error, entry.failure
            emit(
                self._spec.event,
                request_id=entry.request_id,
                endpoint=entry.endpoint,
                method=entry.method,
                path=entry.path,
                status=entry.status,
                outcome=outcome,
                duration_ms=round(entry.seconds * 1000, 3),
                **line,
            )


_LEDGER = web.AppKey("request_ledger", RequestLedger)
# New ids: unique, not secret; a per-process random prefix and a counter cost no system call.
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count()


def request_id(request: web.Request) -> str:
    """The caller's request id when it is a plain token of at most 64 characters, else a new one."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _REQUEST_ID.match(given) else f"{_ID_PREFIX}{next(_ID_COUNTER):08x}"


def set_outcome(request: web.Request, outcome: str, **fields: Any) -> None:
    """Record the request's outcome (its metric label) and any fields for its log line."""
    request[LINE].update(outcome=outcome, **fields)


def setup_request_logging(app: web.Application, spec: RequestLogging) -> None:
    """Log and count each request of ``spec.endpoints`` once; call before any other middleware
    or cleanup context is added, so that it wraps them all and settles after they close."""
    endpoints, internal_error = spec.endpoints, spec.internal_error

    @web.middleware
    async def log_request(request: web.Request, handler: Handler) -> web.StreamResponse:
        endpoint = request.match_info.route.name
        if endpoint not in endpoints:
            return await handler(request)
        rid = request_id(request)
        line = request[LINE] = {}
        started = time.perf_counter()
        status, failure = 500, None
        # bind/reset by token: a third of bound_contextvars' cost, and this runs per webhook
        tokens = structlog.contextvars.bind_contextvars(request_id=rid, endpoint=endpoint)
        try:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                status = exc.status
                raise
            except Exception as exc:  # a bug of ours: still one line, with its traceback
                failure = exc
                line.update(outcome="internal_error", reason=type(exc).__name__)
                response = internal_error()
            status = response.status
            response.headers[REQUEST_ID_HEADER] = rid
            return response
        finally:
            structlog.contextvars.reset_contextvars(**tokens)
            seconds = time.perf_counter() - started
            entry = _Entry(
                endpoint, rid, request.method, request.path, status, seconds, line, failure
            )
            request.app[_LEDGER].record(entry)

    async def ledger_ctx(app: web.Application) -> AsyncIterator[None]:
        ledger = app[_LEDGER] = RequestLedger(spec, asyncio.get_running_loop())
        yield
        ledger.settle()  # whatever is still unsettled at shutdown

    app.middlewares.insert(0, log_request)
    app.cleanup_ctx.insert(0, ledger_ctx)
