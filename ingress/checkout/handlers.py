"""POST /payments/init and POST /checkout/place-order: the session's order, parsed, answered."""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiohttp import web

from ingress.checkout.keys import CHECKOUT
from ingress.checkout.order_views import OrderView
from ingress.checkout.place_order import place_order
from ingress.checkout.requests import invalid, json_body
from ingress.checkout.service import CustomerMismatch, PaymentsRejected, PaymentsUnavailable
from ingress.checkout.shopper import require_session
from ingress.checkout.validation import parse_init, parse_place_order
from shared import metrics
from shared.errors import InvalidPayload
from shared.payrails.errors import PayrailsError, PayrailsTransientError
from shared.request_logging import set_outcome
from shared.state_machine import OrderStatus


async def payments_init(request: web.Request) -> web.Response:
    """Proxy Payrails client/init for the session's customer; return its payload verbatim."""
    bound = await require_session(request)
    parsed = parse_init(await json_body(request))
    if isinstance(parsed, list):
        return invalid(request, parsed)
    checkout = request.app[CHECKOUT]
    customer = bound.customer_reference
    if parsed.holder_reference not in (None, customer):
        metrics.CHECKOUT_SESSION_REFUSALS.labels("customer_mismatch").inc()
        raise CustomerMismatch("holderReference is not this order's customer")
    try:
        payload = await checkout.payrails.client_init(
            holder_reference=customer,
            init_type=parsed.init_type,
            # One key per storefront request, reused by the client's own retries. Not stored:
            # client/init belongs to no order and moves no money, and a shopper who reloads
            # the page needs a new SDK session, not a replay of the old one.
            idempotency_key=uuid.uuid4(),
        )
    except PayrailsTransientError as exc:
        raise PaymentsUnavailable("Payrails is unreachable; try again shortly") from exc
    except (PayrailsError, InvalidPayload) as exc:
        raise PaymentsRejected("Payrails refused or garbled client/init") from exc
    set_outcome(request, "ok")
    return web.json_response(payload, dumps=json.dumps)


def place_order_answer(view: OrderView) -> tuple[int, dict[str, Any]]:
    """The seed's two-case contract, plus 202 processing while the result is not known."""
    if view.status is OrderStatus.ACTION_REQUIRED and view.threeds_url:
        body: dict[str, Any] = {
            "actionRequired": "3ds",
            "redirectUrl": view.threeds_url,
            "executionId": view.execution_id,
            "orderReference": view.reference,
        }
        return 200, body
    body = {
        "status": view.shopper_status,
        "executionId": view.execution_id,
        "orderReference": view.reference,
    }
    if view.status is OrderStatus.PAYMENT_FAILED:
        body["reason"] = view.failure_reason
    return (202 if body["status"] == "processing" else 200), body


async def checkout_place_order(request: web.Request) -> web.Response:
    """Pay the session's order with the tokenized instrument; answer once the outcome is known.

    202 ``processing`` when the outcome is not known within CHECKOUT_POLL_TIMEOUT_SECONDS (the
    poll timed out, or the app is shutting down); 503 ``payrails_unavailable`` when Payrails
    answered none of the polls (transient failures are retried until the deadline). In each
    case the authorize command is already queued, so the order still completes; the storefront
    follows it on GET /orders/{reference} or sends the same request again.
    """
    bound = await require_session(request)
    parsed = parse_place_order(await json_body(request))
    if isinstance(parsed, list):
        return invalid(request, parsed)
    view = await place_order(request.app[CHECKOUT], bound, parsed)
    status, body = place_order_answer(view)
    set_outcome(request, "action_required" if "actionRequired" in body else body["status"])
    return web.json_response(body, status=status)
