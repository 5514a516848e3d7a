"""Typed AppKeys shared by the ingress apps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from shared.config import CheckoutSettings, IngressSettings, WebhookIngressSettings

if TYPE_CHECKING:
    from ingress.publishing import PublisherBase

# Every ingress app's settings, as what both apps read (the broker, the admin server, HTTP
# deadlines) and as the app's own class.
SETTINGS = web.AppKey("settings", IngressSettings)
WEBHOOK_SETTINGS = web.AppKey("webhook_settings", WebhookIngressSettings)
CHECKOUT_SETTINGS = web.AppKey("checkout_settings", CheckoutSettings)
# Typed by annotation: the publishers import this module for their cleanup contexts.
BROKER: web.AppKey[PublisherBase] = web.AppKey("broker")
