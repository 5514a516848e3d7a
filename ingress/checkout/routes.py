"""The checkout API's routes; their names are the metrics' ``endpoint`` label."""

from __future__ import annotations

from aiohttp import web

from ingress.checkout.handlers import checkout_place_order, payments_init
from ingress.checkout.merchant_api import create_merchant_order, get_merchant_order
from ingress.checkout.operations import request_cancel, request_capture, request_refund
from ingress.checkout.order_status import get_order
from ingress.checkout.payment_return import payment_return
from ingress.checkout.shopper import session_summary, start_checkout


def setup_checkout_routes(app: web.Application) -> None:
    app.router.add_get("/checkout/start", start_checkout, name="checkout_start")
    app.router.add_get("/checkout/session", session_summary, name="checkout_session")
    app.router.add_post("/payments/init", payments_init, name="payments_init")
    app.router.add_post("/checkout/place-order", checkout_place_order, name="place_order")
    app.router.add_get("/payment-return/{executionId}", payment_return, name="payment_return")
    app.router.add_get("/orders/{reference}", get_order, name="order_status")
    app.router.add_post("/merchant/orders", create_merchant_order, name="merchant_create_order")
    app.router.add_get(
        "/merchant/orders/{reference}", get_merchant_order, name="merchant_get_order"
    )
    app.router.add_post(
        "/merchant/orders/{reference}/captures", request_capture, name="merchant_capture"
    )
    app.router.add_post(
        "/merchant/orders/{reference}/cancel", request_cancel, name="merchant_cancel"
    )
    app.router.add_post(
        "/merchant/orders/{reference}/refunds", request_refund, name="merchant_refund"
    )
