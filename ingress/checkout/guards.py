"""The shopper doors' guards, in one middleware: browser checks, rate limits, long-poll bounds.

Order matters: the per-address limit runs before the session lookup, so a flood of made-up
tokens costs one dictionary update each, not a database query; the per-session limit runs once
the session is known to be real, so junk tokens cannot fill its table.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from ingress.checkout.browser_guard import check_browser_post, checkout_origin
from ingress.checkout.keys import CHECKOUT, GUARDS
from ingress.checkout.limits import LongPollGate, RateLimiter, address_key
from ingress.checkout.shopper import current_session, require_session
from shared.config import CheckoutSettings

SHOPPER_POSTS = frozenset({"payments_init", "place_order"})
LONG_POLLS = frozenset({"place_order", "payment_return"})


@dataclass(frozen=True, slots=True)
class ShopperGuards:
    origin: str
    per_session: RateLimiter
    per_address: RateLimiter
    long_polls: LongPollGate

    @classmethod
    def from_settings(cls, settings: CheckoutSettings) -> ShopperGuards:
        return cls(
            origin=checkout_origin(settings.public_base_url),
            per_session=RateLimiter(settings.checkout_rate_limit_per_session, scope="session"),
            per_address=RateLimiter(settings.checkout_rate_limit_per_address, scope="address"),
            long_polls=LongPollGate(
                settings.checkout_long_polls_per_session, settings.checkout_long_polls_total
            ),
        )


@web.middleware
async def shopper_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse foreign or non-JSON browser POSTs and floods; bound the long-polls per session."""
    route = request.match_info.route.name
    guards = request.app[GUARDS]
    if route in SHOPPER_POSTS:
        check_browser_post(request, guards.origin)
        guards.per_address.check(address_key(request.remote))
        bound = await require_session(request)
        guards.per_session.check(str(bound.session_id))
    if route in LONG_POLLS:
        session = await current_session(request.app[CHECKOUT], request)
        if session is not None:  # without one, the handler refuses before any poll
            async with guards.long_polls.hold(str(session.session_id)):
                return await handler(request)
    return await handler(request)
