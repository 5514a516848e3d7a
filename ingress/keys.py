"""Typed AppKeys shared by the ingress apps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from shared.config import Settings

if TYPE_CHECKING:
    from ingress.ledger import RequestLedger
    from ingress.publishing import Publisher

SETTINGS = web.AppKey("settings", Settings)
# Typed by annotation: the publishers import this module for their cleanup contexts.
BROKER: web.AppKey[Publisher] = web.AppKey("broker")
LEDGER: web.AppKey[RequestLedger] = web.AppKey("ledger")
