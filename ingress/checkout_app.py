"""The checkout app: payment init, place-order, the 3-D Secure return page, order status.

Resources live in cleanup contexts, set up in order and torn down in reverse: the database
engine, the broker (aio-pika, as the worker publishes: a place-order's time goes to Payrails
round-trips, so the webhook ingress's custom publisher would gain nothing here), the Payrails
client, and last the ``Checkout`` service object built from them.

Shutdown (SIGTERM) first sets the service's ``stopping`` event from ``on_shutdown``, which runs
before the runner waits for in-flight requests: a place-order still long-polling Payrails then
answers 202 processing at once (its authorize is queued, so the order completes without it)
instead of being cut off when INGRESS_SHUTDOWN_GRACE_SECONDS runs out.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator

from aiohttp import web
from sqlalchemy import text

from ingress.aio_pika_broker import aio_pika_broker_ctx
from ingress.checkout.guards import ShopperGuards, shopper_guard
from ingress.checkout.keys import API_KEYS, CHECKOUT, GUARDS, PAYRAILS, RETURN_TEMPLATE, SESSIONS
from ingress.checkout.merchant_auth import ApiKeys
from ingress.checkout.middleware import REQUEST_LOGGING, translate_errors
from ingress.checkout.payment_return import load_return_template
from ingress.checkout.routes import setup_checkout_routes
from ingress.checkout.service import Checkout
from ingress.health import add_health_routes, broker_ready
from ingress.keys import BROKER, CHECKOUT_SETTINGS, SETTINGS
from shared.config import CheckoutSettings
from shared.db.session import create_engine, create_sessionmaker
from shared.messaging import Names
from shared.payrails.client import open_payrails_client
from shared.request_logging import setup_request_logging

CHECKOUT_MAX_BODY_BYTES = 64 * 1024
CONNECTION_NAME = "recon-checkout"
READY_CHECK_SECONDS = 2.0


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    engine = create_engine(app[CHECKOUT_SETTINGS])
    app[SESSIONS] = create_sessionmaker(engine)
    yield
    await engine.dispose()


async def payrails_ctx(app: web.Application) -> AsyncIterator[None]:
    async with open_payrails_client(app[CHECKOUT_SETTINGS]) as client:
        app[PAYRAILS] = client
        yield


async def checkout_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[CHECKOUT_SETTINGS]
    app[CHECKOUT] = Checkout(
        settings=settings,
        names=Names.from_settings(settings),
        sessions=app[SESSIONS],
        payrails=app[PAYRAILS],
        broker=app[BROKER],
        stopping=asyncio.Event(),
    )
    yield


async def signal_stopping(app: web.Application) -> None:
    """on_shutdown: end the long waits of in-flight requests so they answer before the grace."""
    checkout = app.get(CHECKOUT)
    if checkout is not None:
        checkout.stopping.set()


async def database_ready(app: web.Application) -> bool:
    """True when the database answers a trivial query quickly."""
    try:
        async with asyncio.timeout(READY_CHECK_SECONDS), app[SESSIONS]() as session:
            await session.execute(text("SELECT 1"))
    except Exception:  # any failure to reach the database means not ready
        return False
    return True


def setup_storefront(app: web.Application) -> None:
    """Mount the demo storefront when its module is installed; the API works without it."""
    try:
        storefront = importlib.import_module("ingress.storefront")
    except ModuleNotFoundError as exc:
        if exc.name != "ingress.storefront":
            raise
        return
    storefront.setup_storefront_routes(app)


def create_checkout_app(settings: CheckoutSettings) -> web.Application:
    """The app behind ``python -m ingress checkout``."""
    app = web.Application(
        middlewares=[translate_errors, shopper_guard], client_max_size=CHECKOUT_MAX_BODY_BYTES
    )
    setup_request_logging(app, REQUEST_LOGGING)
    app[API_KEYS] = ApiKeys(settings.merchant_api_keys)
    # From here on the keys exist only as digests: the app's settings keep none of them.
    settings = settings.model_copy(update={"merchant_api_keys": ()})
    app[SETTINGS] = app[CHECKOUT_SETTINGS] = settings
    app[GUARDS] = ShopperGuards.from_settings(settings)
    app[RETURN_TEMPLATE] = load_return_template()
    app.cleanup_ctx.extend(
        [database_ctx, aio_pika_broker_ctx(CONNECTION_NAME), payrails_ctx, checkout_ctx]
    )
    app.on_shutdown.append(signal_stopping)
    setup_checkout_routes(app)
    add_health_routes(
        app,
        {"broker": broker_ready, "database": database_ready},
        admin_port=settings.checkout_admin_port,
    )
    setup_storefront(app)
    return app
