"""The demo shop app: the product page, Buy (order through the merchant API, then redirect)."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from demoshop import pages
from demoshop.catalogue import find_product
from demoshop.config import DemoShopConfig
from demoshop.merchant_client import MerchantApiError, MerchantClient

CONFIG = web.AppKey("config", DemoShopConfig)
MERCHANT = web.AppKey("merchant", MerchantClient)

# Cookies are not kept apart by port: on 127.0.0.1 the checkout's cookies reach this shop and
# this one reaches the checkout, so the name says whose it is.
CUSTOMER_COOKIE = "demo_shop_customer"
CUSTOMER = re.compile(r"^shopper-[0-9a-f]{16}\Z")
CUSTOMER_COOKIE_MAX_AGE = 30 * 24 * 3600
MAX_FORM_BYTES = 4096

log = structlog.get_logger("demoshop")


def create_demo_shop_app(config: DemoShopConfig) -> web.Application:
    app = web.Application(client_max_size=MAX_FORM_BYTES, middlewares=[error_middleware])
    app[CONFIG] = config
    app.cleanup_ctx.append(_merchant_ctx)
    app.router.add_get("/", shop_page)
    app.router.add_post("/buy", buy)
    app.router.add_get("/shop.css", stylesheet)
    app.router.add_get("/healthz", health)
    return app


async def _merchant_ctx(app: web.Application) -> AsyncIterator[None]:
    """One HTTP client to the checkout for the app's life; every call bounded in time."""
    config = app[CONFIG]
    timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        app[MERCHANT] = MerchantClient(session, config.checkout_url, config.api_key)
        yield


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An unexpected failure is logged and answered with a plain page, never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("demoshop.request_failed", method=request.method, path=request.path)
        return pages.error_page(
            500, "Something went wrong", "The demo shop could not handle this; its log says why."
        )


async def shop_page(request: web.Request) -> web.Response:
    response = pages.html_page(pages.render_shop())
    _customer(request, response)
    return response


async def buy(request: web.Request) -> web.Response:
    """Create the order at the catalogue's price (whatever the form says), then go to checkout."""
    if not _same_origin(request):
        return pages.error_page(
            403, "Not from this shop", "Buy works from this shop's own page only: buy there."
        )
    form = await request.post()
    product_id = form.get("product")
    product = find_product(product_id) if isinstance(product_id, str) else None
    if product is None:
        return pages.error_page(404, "No such product", "This shop does not sell that product.")
    response = web.Response(status=303)
    customer = _customer(request, response)
    reference = f"demo-{uuid.uuid4().hex}"
    try:
        created = await request.app[MERCHANT].create_order(reference, customer, product.price)
    except MerchantApiError as exc:
        log.warning(
            "demoshop.order_failed",
            order_reference=reference,
            product=product.id,
            merchant_api_status=exc.status,
            reason=exc.title,
        )
        return pages.error_page(exc.page_status, exc.title, exc.detail)
    log.info(
        "demoshop.order_created",
        order_reference=reference,
        product=product.id,
        amount=product.price_label,
    )
    response.headers["Location"] = created.checkout_url
    return response


async def stylesheet(_request: web.Request) -> web.Response:
    return pages.stylesheet()


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _same_origin(request: web.Request) -> bool:
    """A state-changing request must come from this shop's own page (its Origin, else Referer).

    SameSite alone does not do: another port on the same host is the same site.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        referer = urlsplit(request.headers.get("Referer", ""))
        origin = f"{referer.scheme}://{referer.netloc}" if referer.netloc else ""
    return origin.lower() == f"{request.scheme}://{request.host}".lower()


def _customer(request: web.Request, response: web.Response) -> str:
    """The shopper's demo customer reference, from the shop's cookie; a new one when missing."""
    known = request.cookies.get(CUSTOMER_COOKIE, "")
    if CUSTOMER.match(known):
        return known
    customer = f"shopper-{secrets.token_hex(8)}"
    response.set_cookie(
        CUSTOMER_COOKIE,
        customer,
        max_age=CUSTOMER_COOKIE_MAX_AGE,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return customer
