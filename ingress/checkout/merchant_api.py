"""The merchant API: commerce backends create orders (amount, currency, customer) and read them.

Every call needs a merchant API key. Creating an order returns a checkout session for the
shopper; the storefront can then pay that order, at that price, and nothing else.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web
from sqlalchemy import select

from ingress.checkout.keys import API_KEYS, CHECKOUT
from ingress.checkout.merchant_auth import require_merchant
from ingress.checkout.requests import invalid, json_body
from ingress.checkout.service import OrderConflict, OrderNotFound
from shared import metrics
from shared.checkout_sessions import IssuedSession, is_payable, issue_session
from shared.db.models import Order
from shared.merchant_orders import OrderTermsConflict, create_order
from shared.operation_intake import money_json, operation_json
from shared.operation_store import operations_of, picture_of
from shared.order_store import order_money
from shared.request_logging import set_outcome
from shared.validation import REFERENCE, REFERENCE_MAX, parse_order_terms

log = structlog.get_logger(__name__)


def merchant_order_json(order: Order) -> dict[str, Any]:
    """What a commerce backend reads of one order."""
    return {
        "orderReference": order.reference,
        "customerReference": order.customer_reference,
        "status": order.status,
        "amount": order_money(order).to_json(),
        "executionId": order.execution_id,
        "paymentMethodCode": order.payment_method_code,
        "failureReason": order.failure_reason,
        "createdAt": order.created_at.isoformat(),
        "updatedAt": order.updated_at.isoformat(),
    }


def _no_store(response: web.Response) -> web.Response:
    response.headers["Cache-Control"] = "no-store"
    return response


async def create_merchant_order(request: web.Request) -> web.Response:
    """POST /merchant/orders: 201 new, 200 the same terms again, 409 other terms."""
    require_merchant(request, request.app[API_KEYS])
    terms = parse_order_terms(await json_body(request))
    if isinstance(terms, list):
        metrics.MERCHANT_ORDERS.labels("http", "invalid").inc()
        return invalid(request, terms)
    checkout = request.app[CHECKOUT]
    issued: IssuedSession | None = None
    async with checkout.sessions.begin() as session:
        try:
            result = await create_order(session, terms)
        except OrderTermsConflict as exc:
            metrics.MERCHANT_ORDERS.labels("http", "conflict").inc()
            raise OrderConflict(
                "this orderReference exists with another amount, currency or customer",
                details={"orderReference": exc.reference, "fields": exc.fields},
            ) from exc
        if is_payable(result.order):
            ttl = checkout.settings.checkout_session_ttl_seconds
            issued = await issue_session(session, result.order, ttl)
        body = {
            "order": merchant_order_json(result.order),
            "checkoutSession": issued.to_json(checkout.settings.public_base_url)
            if issued
            else None,
        }
    outcome = "created" if result.created else "repeated"
    metrics.MERCHANT_ORDERS.labels("http", outcome).inc()
    log.info("merchant.order", order_reference=terms.reference, outcome=outcome)
    set_outcome(request, outcome)
    return _no_store(web.json_response(body, status=201 if result.created else 200))


async def get_merchant_order(request: web.Request) -> web.Response:
    """GET /merchant/orders/{reference}: any order, its money picture and its operations."""
    require_merchant(request, request.app[API_KEYS])
    reference = request.match_info["reference"]
    if len(reference) > REFERENCE_MAX or not REFERENCE.match(reference):
        raise OrderNotFound("no order has this reference")
    async with request.app[CHECKOUT].sessions.begin() as session:
        order = await session.scalar(select(Order).where(Order.reference == reference))
        if order is None:
            raise OrderNotFound("no order has this reference")
        rows = await operations_of(session, order.id)
        body = {
            "order": merchant_order_json(order),
            "money": money_json(picture_of(order, rows)),
            "operations": [operation_json(row) for row in rows],
        }
    set_outcome(request, order.status)
    return _no_store(web.json_response(body))
