"""GET /orders/{reference}: the order's state, for the shopper whose session it is."""

from __future__ import annotations

from aiohttp import web

from ingress.checkout.keys import CHECKOUT
from ingress.checkout.order_views import view_by_reference
from ingress.checkout.service import OrderNotFound
from ingress.checkout.shopper import owns_reference
from ingress.checkout.validation import REFERENCE, REFERENCE_MAX
from shared.request_logging import set_outcome


async def get_order(request: web.Request) -> web.Response:
    """The order's status in the state machine's words, with what the shopper may need.

    Without this order's checkout session the answer is 404, as for an order that does not
    exist: a reference alone reveals nothing.
    """
    reference = request.match_info["reference"]
    if len(reference) > REFERENCE_MAX or not REFERENCE.match(reference):
        raise OrderNotFound("no order has this reference")
    if not await owns_reference(request, reference):
        raise OrderNotFound("no order has this reference")
    view = await view_by_reference(request.app[CHECKOUT].sessions, reference)
    if view is None:
        raise OrderNotFound("no order has this reference")
    set_outcome(request, view.status.value)
    response = web.json_response(view.to_json())
    response.headers["Cache-Control"] = "no-store"
    return response
