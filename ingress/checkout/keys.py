"""Typed AppKeys of the checkout app, beside the shared ones in ``ingress.keys``."""

from __future__ import annotations

from string import Template

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ingress.checkout.service import Checkout
from shared.payrails.client import PayrailsClient

SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
PAYRAILS = web.AppKey("payrails", PayrailsClient)
CHECKOUT = web.AppKey("checkout", Checkout)
RETURN_TEMPLATE = web.AppKey("return_template", Template)
# Set by handlers, read by the request middleware: the metric's ``outcome`` label.
OUTCOME = web.RequestKey("outcome", str)
