"""Typed AppKeys shared by the ingress apps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from shared.config import Settings

if TYPE_CHECKING:
    from ingress.broker import Broker
    from ingress.ledger import RequestLedger

SETTINGS = web.AppKey("settings", Settings)
# Typed by annotation: ingress.broker imports this module for its cleanup context.
BROKER: web.AppKey[Broker] = web.AppKey("broker")
LEDGER: web.AppKey[RequestLedger] = web.AppKey("ledger")
