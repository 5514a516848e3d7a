"""The checkout's request middlewares: error translation, and its request-logging settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from ingress.checkout.service import CheckoutError
from shared import metrics
from shared.db.failover import MAYBE_TRANSIENT, is_transient
from shared.request_logging import RequestLogging, set_outcome

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
        "merchant_capture",
        "merchant_cancel",
        "merchant_refund",
    }
)


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


@web.middleware
async def translate_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The handler's response, with the service's errors translated exactly once."""
    try:
        return await handler(request)
    except CheckoutError as exc:
        set_outcome(request, exc.code)
        return error_response(
            exc.status,
            exc.code,
            exc.message,
            title=exc.title,
            headers=exc.headers,
            **exc.details,
        )
    # A pool timeout (every pooled connection busy: a load peak) too: the same request again
    # a moment later is served, as after a failover.
    except MAYBE_TRANSIENT as exc:
        if not is_transient(exc):
            raise
        log.warning("checkout.dependency_unavailable", error=type(exc).__name__)
        set_outcome(request, "unavailable")
        return error_response(503, "unavailable", "a dependency is unavailable; retry shortly")


def internal_error() -> web.Response:
    """A bug of ours: a problem+json 500 that says nothing of it."""
    return error_response(500, "internal_error", "the request failed unexpectedly")


def count(endpoint: str, outcome: str, seconds: float, _line: Mapping[str, Any]) -> None:
    """The checkout metrics of one request. ``outcome`` is a closed set (handlers' fixed codes
    and order statuses, else the HTTP status), never a value taken from the request."""
    metrics.CHECKOUT_REQUESTS.labels(endpoint, outcome).inc()
    metrics.CHECKOUT_REQUEST_SECONDS.labels(endpoint, outcome).observe(seconds)


REQUEST_LOGGING = RequestLogging(
    logger="ingress.checkout",
    event="checkout.request",
    endpoints=ENDPOINTS,
    count=count,
    internal_error=internal_error,
)
