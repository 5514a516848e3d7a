"""GET /payment-return/{executionId}: where the 3-D Secure challenge sends the shopper back.

With the order's checkout session: long-polls the execution out of ``authorizePending`` (ended
early when the app shuts down: the page then says processing), records what it sees (cause
``return``) and answers a page that tells the opener or parent frame, on this origin only, how it
ended.

Without it: 404, revealing nothing. A challenge run in an iframe returns through a cross-site
navigation (from the bank's page), which carries no SameSite cookie; so the 404 page only tells
the parent frame, on this origin, that the challenge returned. The storefront (top level, with
its cookie) then asks this URL for the JSON outcome itself.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import secrets
from importlib import resources
from string import Template

import structlog
from aiohttp import web

from ingress.checkout.keys import CHECKOUT, RETURN_TEMPLATE
from ingress.checkout.order_views import OrderView, record_execution, view_by_execution
from ingress.checkout.service import Checkout, OrderNotFound
from ingress.checkout.shopper import current_session
from shared.checkout_sessions import BoundSession
from shared.errors import InvalidPayload
from shared.payrails.errors import PayrailsError
from shared.payrails.models import Execution
from shared.request_logging import set_outcome
from shared.state_machine import TERMINAL, Cause

log = structlog.get_logger(__name__)

RETURN_WAIT_WHILE = ("authorizePending",)
EXECUTION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_HEADINGS = {
    "authorized": ("Payment authorized", "Thank you: your payment went through."),
    "failed": ("Payment failed", "Your payment did not go through."),
    "processing": ("Payment processing", "We are confirming your payment; this page updates you."),
}


def load_return_template() -> Template:
    """The page template shipped beside this module."""
    source = resources.files("ingress.checkout").joinpath("payment_return.html")
    return Template(source.read_text(encoding="utf-8"))


async def resolve_return(checkout: Checkout, execution_id: str, reference: str) -> OrderView:
    """Poll the execution after the challenge and record it; the order as it then stands.

    ``reference``: the order of the shopper's session; another order's execution is not found.
    """
    view = await view_by_execution(checkout.sessions, execution_id)
    if view is None or view.reference != reference:
        raise OrderNotFound("no order has this execution id")
    if view.status in TERMINAL:
        return view
    execution = await _poll_unless_stopping(checkout, execution_id)
    if execution is None:
        return view
    await record_execution(checkout.sessions, execution, Cause.RETURN)
    refreshed = await view_by_execution(checkout.sessions, execution_id)
    return refreshed or view


async def _poll_unless_stopping(checkout: Checkout, execution_id: str) -> Execution | None:
    """The execution once out of ``authorizePending``; None if Payrails failed or we shut down."""
    poll = asyncio.create_task(
        checkout.payrails.get_execution(
            execution_id,
            wait_while=RETURN_WAIT_WHILE,
            timeout=checkout.settings.return_poll_timeout_seconds,
        )
    )
    stopping = asyncio.create_task(checkout.stopping.wait())
    try:
        await asyncio.wait({poll, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (poll, stopping):
            task.cancel()
        await asyncio.gather(poll, stopping, return_exceptions=True)
    if poll.cancelled():
        return None
    try:
        return poll.result()
    except (PayrailsError, InvalidPayload) as exc:
        log.warning("checkout.return_poll_failed", error=repr(exc))
        return None


def return_message(view: OrderView) -> dict[str, str | None]:
    """What the page posts to its opener or parent (the seed's ``threeds:complete``)."""
    return {
        "type": "threeds:complete",
        "orderReference": view.reference,
        "status": view.shopper_status,
        "executionId": view.execution_id,
        "reason": view.failure_reason,
    }


def _script_json(data: object) -> str:
    """JSON safe inside a <script> element: no closing tag or entity can be formed."""
    text = json.dumps(data)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_return_page(template: Template, view: OrderView, nonce: str) -> str:
    status = view.shopper_status
    heading, detail = _HEADINGS[status]
    if status == "failed" and view.failure_reason:
        detail = f"{detail} Reason: {view.failure_reason}."
    return template.substitute(
        title=html.escape(heading),
        heading=html.escape(heading),
        detail=html.escape(detail),
        status=status,
        order_reference=html.escape(view.reference),
        payload=_script_json(return_message(view)),
        nonce=nonce,
    )


def _wants_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


async def _owned_return(
    checkout: Checkout, execution_id: str, bound: BoundSession | None
) -> OrderView:
    """``resolve_return`` for the session's own order; OrderNotFound for anything else."""
    if not EXECUTION_ID.match(execution_id) or bound is None:
        raise OrderNotFound("no order has this execution id")
    return await resolve_return(checkout, execution_id, bound.order_reference)


def _page(text: str, nonce: str, status: int = 200) -> web.Response:
    response = web.Response(text=text, status=status, content_type="text/html")
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def render_handoff_page(nonce: str) -> str:
    """The 404 page for a return without the session: it names nothing, only tells the parent."""
    return (
        "<!doctype html><meta charset='utf-8'><title>Returning to the shop</title>"
        "<p>Returning to the shop…</p>"
        f"<script nonce='{nonce}'>(function () {{"
        "var target = window.opener || (window.parent !== window ? window.parent : null);"
        "var id = window.location.pathname.split('/').pop();"
        "if (target) target.postMessage({type: 'threeds:returned', executionId: id},"
        " window.location.origin);"
        "})();</script>"
    )


async def payment_return(request: web.Request) -> web.Response:
    """GET /payment-return/{executionId}: an HTML page, or JSON for ``Accept: application/json``."""
    execution_id = request.match_info["executionId"]
    bound = await current_session(request.app[CHECKOUT], request)
    nonce = secrets.token_urlsafe(16)
    try:
        view = await _owned_return(request.app[CHECKOUT], execution_id, bound)
    except OrderNotFound:
        if _wants_json(request):
            raise
        set_outcome(request, "not_found")
        return _page(render_handoff_page(nonce), nonce, status=404)
    set_outcome(request, view.shopper_status)
    if _wants_json(request):
        response = web.json_response(return_message(view))
        response.headers["Cache-Control"] = "no-store"
        return response
    return _page(render_return_page(request.app[RETURN_TEMPLATE], view, nonce), nonce)
