"""One middleware per checkout request: error translation, metrics and one log line."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from ingress.checkout.keys import OUTCOME
from ingress.checkout.service import CheckoutError
from shared import metrics
from shared.db.failover import is_transient
from shared.errors import TransientError

log = structlog.get_logger("ingress.checkout")

# Route names of the checkout API: the ``endpoint`` label's whole value set.
ENDPOINTS = frozenset(
    {
        "checkout_start",
        "checkout_session",
        "payments_init",
        "place_order",
        "payment_return",
        "order_status",
        "merchant_create_order",
        "merchant_get_order",
    }
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **details: Any,
) -> web.Response:
    """An RFC 9457 problem+json body; ``error`` and ``message`` keep the older clients working."""
    body = {
        "type": "about:blank",
        "title": title or code.replace("_", " ").capitalize(),
        "status": status,
        "detail": message,
        "error": code,
        "message": message,
        **details,
    }
    response = web.json_response(
        body, status=status, headers=headers, content_type="application/problem+json"
    )
    response.headers.setdefault("Cache-Control", "no-store")
    return response


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The handler's response, with the service's errors translated exactly once."""
    try:
        return await handler(request)
    except CheckoutError as exc:
        request[OUTCOME] = exc.code
        return error_response(
            exc.status,
            exc.code,
            exc.message,
            title=exc.title,
            headers=exc.headers,
            **exc.details,
        )
    # PoolTimeout: every pooled connection stayed busy (a load peak); the same request again
    # a moment later is served, as after a failover.
    except (TransientError, DBAPIError, PoolTimeout) as exc:
        if not is_transient(exc):
            raise
        log.warning("checkout.dependency_unavailable", error=type(exc).__name__)
        request[OUTCOME] = "unavailable"
        return error_response(503, "unavailable", "a dependency is unavailable; retry shortly")


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-Id", "")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


@web.middleware
async def checkout_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind the request id, answer, then count, time and log the request once."""
    endpoint = request.match_info.route.name
    if endpoint not in ENDPOINTS:
        return await handler(request)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=_request_id(request), endpoint=endpoint)
    started = time.perf_counter()
    status = 500
    try:
        response = await _answer(request, handler)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except Exception:
        log.exception("checkout.unhandled_error")
        return error_response(500, "internal_error", "the request failed unexpectedly")
    finally:
        elapsed = time.perf_counter() - started
        # A closed set, so safe as a label: handlers' fixed codes and order statuses, else the
        # HTTP status. Never a value taken from the request.
        outcome = request.get(OUTCOME) or f"http_{status}"
        metrics.CHECKOUT_REQUESTS.labels(endpoint, outcome).inc()
        metrics.CHECKOUT_REQUEST_SECONDS.labels(endpoint, outcome).observe(elapsed)
        log.info(
            "checkout.request",
            method=request.method,
            path=request.path,
            status=status,
            outcome=outcome,
            duration_ms=round(elapsed * 1000, 1),
        )
