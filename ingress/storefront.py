"""Demo storefront served by the checkout app: the seed's checkout page and a live confirmation.

The pages load the Secure Fields SDK from the Payrails origin (the sandbox by default), so card
data is typed into Payrails' iframes and never reaches this app. The page holds no price: its
script reads the checkout session's order (``GET /checkout/session``), whose amount the
commerce backend set.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Template

from aiohttp import web

from ingress.keys import CHECKOUT_SETTINGS
from shared.config import CheckoutSettings

TEMPLATES_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")
SDK_PATH = "/public/sdk/payrails-sdk.js"


@dataclass(frozen=True, slots=True)
class SandboxCard:
    """A sandbox card number and what the sandbox does with it."""

    number: str
    behaviour: str


TEST_CARDS: tuple[SandboxCard, ...] = (
    SandboxCard("4242 4242 4242 4242", "frictionless approve"),
    SandboxCard(
        "4000 0000 0000 3220",
        "3-D Secure challenge: hosted page with Complete (approve) and Fail "
        "(authorizeFailed, operationResult PayerAuthenticationFailed) buttons",
    ),
    SandboxCard("4000 0000 0000 9995", "decline, operationResult InsufficientBalance"),
    SandboxCard(
        "4000 0027 6000 3184",
        "cascade: challenge runs once, primary PSP declines, secondary approves",
    ),
    SandboxCard(
        "4000 0000 0000 0119",
        "unknown outcome: operationResult ProviderTimeout, payment status Unknown",
    ),
)
TEST_CARD_NOTE = "Any expiry in the future and any 3-4 digit CVV."

STATIC_ASSETS: Mapping[str, str] = {
    "checkout.js": "application/javascript",
    "confirmation.js": "application/javascript",
    "storefront.css": "text/css",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def sdk_origin(settings: CheckoutSettings) -> str:
    """The origin the shopper's browser loads the SDK and the card iframes from."""
    return settings.payrails_sdk_origin or settings.payrails_base_url


def content_security_policy(settings: CheckoutSettings) -> str:
    """Scripts from us and the SDK only; frames from the SDK and any 3-D Secure page (https)."""
    origin = sdk_origin(settings)
    return (
        f"default-src 'self'; script-src 'self' {origin}; frame-src 'self' {origin} https:; "
        "connect-src 'self'; img-src 'self' data:; style-src 'self'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )


def _test_card_rows() -> str:
    return "\n".join(
        f"          <tr><td><code>{html.escape(card.number)}</code></td>"
        f"<td>{html.escape(card.behaviour)}</td></tr>"
        for card in TEST_CARDS
    )


def render_checkout(template: Template, settings: CheckoutSettings) -> str:
    """The checkout page: three Secure Fields mounts, Place order, the 3-D Secure modal."""
    return template.substitute(
        sdk_script_url=html.escape(sdk_origin(settings) + SDK_PATH),
        test_card_rows=_test_card_rows(),
        test_card_note=html.escape(TEST_CARD_NOTE),
    )


def render_confirmation(template: Template, reference: str) -> str:
    """The confirmation page shell; its script follows GET /orders/{reference}."""
    return template.substitute(reference=html.escape(reference))


def _page(body: str, settings: CheckoutSettings) -> web.Response:
    response = web.Response(text=body, content_type="text/html")
    response.headers["Content-Security-Policy"] = content_security_policy(settings)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _checkout_handler(template: Template) -> Handler:
    async def checkout_page(request: web.Request) -> web.Response:
        settings = request.app[CHECKOUT_SETTINGS]
        return _page(render_checkout(template, settings), settings)

    return checkout_page


def _confirmation_handler(template: Template) -> Handler:
    async def confirmation_page(request: web.Request) -> web.Response:
        reference = request.match_info["reference"]
        return _page(render_confirmation(template, reference), request.app[CHECKOUT_SETTINGS])

    return confirmation_page


def _static_handler(body: bytes, content_type: str) -> Handler:
    async def static_asset(request: web.Request) -> web.Response:
        response = web.Response(body=body, content_type=content_type, charset="utf-8")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    return static_asset


def setup_storefront_routes(app: web.Application) -> None:
    """Add GET /, GET /order-confirmation/{reference} and /static/* (files read once, here)."""
    checkout = Template((TEMPLATES_DIR / "checkout.html").read_text(encoding="utf-8"))
    confirmation = Template((TEMPLATES_DIR / "confirmation.html").read_text(encoding="utf-8"))
    app.router.add_get("/", _checkout_handler(checkout))
    app.router.add_get("/order-confirmation/{reference}", _confirmation_handler(confirmation))
    for name, content_type in STATIC_ASSETS.items():
        body = (STATIC_DIR / name).read_bytes()
        app.router.add_get(f"/static/{name}", _static_handler(body, content_type))
