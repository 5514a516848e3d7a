"""Typed AppKeys of the checkout app, beside the shared ones in ``ingress.keys``."""

from __future__ import annotations

from string import Template
from typing import TYPE_CHECKING

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ingress.checkout.merchant_auth import ApiKeys
from ingress.checkout.service import Checkout
from shared.checkout_sessions import BoundSession
from shared.payrails.client import PayrailsClient

if TYPE_CHECKING:
    from ingress.checkout.guards import ShopperGuards

SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
PAYRAILS = web.AppKey("payrails", PayrailsClient)
CHECKOUT = web.AppKey("checkout", Checkout)
API_KEYS = web.AppKey("api_keys", ApiKeys)
# Typed by annotation: ingress.checkout.guards imports this module.
GUARDS: web.AppKey[ShopperGuards] = web.AppKey("guards")
RETURN_TEMPLATE = web.AppKey("return_template", Template)
# The request's checkout session, once looked up (None: it carries no valid one).
BOUND_SESSION: web.RequestKey[BoundSession | None] = web.RequestKey("bound_session")
