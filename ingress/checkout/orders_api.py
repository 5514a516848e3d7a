"""GET /orders/{reference}: the order's state for a storefront polling after a 202."""

from __future__ import annotations

from aiohttp import web

from ingress.checkout.keys import CHECKOUT, OUTCOME
from ingress.checkout.orders import view_by_reference
from ingress.checkout.service import OrderNotFound
from ingress.checkout.validation import REFERENCE, REFERENCE_MAX


async def get_order(request: web.Request) -> web.Response:
    """The order's status in the state machine's words, with what the shopper may need."""
    reference = request.match_info["reference"]
    if len(reference) > REFERENCE_MAX or not REFERENCE.match(reference):
        raise OrderNotFound("no order has this reference")
    view = await view_by_reference(request.app[CHECKOUT].sessions, reference)
    if view is None:
        raise OrderNotFound("no order has this reference")
    request[OUTCOME] = view.status.value
    return web.json_response(view.to_json())
