"""The shopper's checkout session: where it comes from, and the owner check on every request.

The commerce backend hands the shopper a checkout URL (``/checkout/start?session=<token>``);
this app moves the token into an HttpOnly, SameSite cookie and redirects to the storefront, so
the token leaves the address bar at once. Native apps (and tests) may send the token in the
``X-Checkout-Session`` header instead. Every shopper request then acts on that one order only.
"""

from __future__ import annotations

from aiohttp import web

from ingress.checkout.keys import BOUND_SESSION, CHECKOUT
from ingress.checkout.order_views import view_by_reference
from ingress.checkout.service import Checkout, SessionRequired
from shared import metrics
from shared.checkout_sessions import BoundSession, resolve_session
from shared.config import is_loopback_http
from shared.order_store import utcnow
from shared.request_logging import set_outcome

COOKIE = "checkout_session"
HEADER = "X-Checkout-Session"
STOREFRONT_PATH = "/"
_INVALID_LINK_PAGE = (
    "<!doctype html><meta charset='utf-8'><title>Checkout link expired</title>"
    "<h1>This checkout link is invalid or has expired</h1>"
    "<p>Go back to the shop and start the checkout again.</p>"
)


def presented_token(request: web.Request) -> str | None:
    """The session token the request carries: the header wins over the cookie."""
    return request.headers.get(HEADER) or request.cookies.get(COOKIE) or None


async def lookup(checkout: Checkout, token: str | None) -> BoundSession | None:
    """The unexpired session ``token`` names, or None."""
    if not token:
        return None
    async with checkout.sessions.begin() as session:
        return await resolve_session(session, token)


async def current_session(checkout: Checkout, request: web.Request) -> BoundSession | None:
    """The request's valid session, looked up once per request."""
    if BOUND_SESSION not in request:
        request[BOUND_SESSION] = await lookup(checkout, presented_token(request))
    return request[BOUND_SESSION]


async def require_session(request: web.Request) -> BoundSession:
    """The request's session, or 401: the shopper has to come through the shop."""
    bound = await current_session(request.app[CHECKOUT], request)
    if bound is None:
        reason = "missing" if presented_token(request) is None else "invalid"
        metrics.CHECKOUT_SESSION_REFUSALS.labels(reason).inc()
        raise SessionRequired(
            "no valid checkout session: open the checkout link the shop gave you"
            if reason == "missing"
            else "the checkout session is invalid or has expired: start again from the shop"
        )
    return bound


async def owns_reference(request: web.Request, reference: str) -> bool:
    """True when the request's session is bound to the order with this reference."""
    bound = await current_session(request.app[CHECKOUT], request)
    return bound is not None and bound.order_reference == reference


async def session_summary(request: web.Request) -> web.Response:
    """GET /checkout/session: the session's order as the storefront shows it (price included)."""
    bound = await require_session(request)
    view = await view_by_reference(request.app[CHECKOUT].sessions, bound.order_reference)
    if view is None:  # the order was deleted under the session
        raise SessionRequired("the checkout session's order no longer exists")
    set_outcome(request, view.status.value)
    body = {
        "orderReference": view.reference,
        "amount": view.amount.to_json(),
        "status": view.status.value,
        "expiresAt": bound.expires_at.isoformat(),
    }
    response = web.json_response(body)
    response.headers["Cache-Control"] = "no-store"
    return response


async def start_checkout(request: web.Request) -> web.Response:
    """GET /checkout/start?session=<token>: keep the token in a cookie, show the storefront."""
    checkout = request.app[CHECKOUT]
    token = request.query.get("session", "")
    bound = await lookup(checkout, token)
    if bound is None:
        metrics.CHECKOUT_SESSION_REFUSALS.labels("invalid" if token else "missing").inc()
        response = web.Response(text=_INVALID_LINK_PAGE, status=403, content_type="text/html")
    else:
        response = web.Response(status=303, headers={"Location": STOREFRONT_PATH})
        remaining = int((bound.expires_at - utcnow()).total_seconds())
        response.set_cookie(
            COOKIE,
            token,
            max_age=max(remaining, 1),
            path="/",
            httponly=True,
            samesite="Lax",
            secure=not is_loopback_http(checkout.settings.public_base_url),
        )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the URL held the token
    return response
