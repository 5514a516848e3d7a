"""The webhook ingress app: POST /webhooks/payrails and /healthz; readiness and metrics on its
admin port (WEBHOOK_ADMIN_PORT)."""

from __future__ import annotations

from aiohttp import web

from ingress.aio_pika_broker import aio_pika_broker_ctx
from ingress.broker import broker_ctx
from ingress.health import add_health_routes, broker_ready
from ingress.keys import SETTINGS, WEBHOOK_SETTINGS
from ingress.publishing import CleanupContext
from ingress.webhooks import REQUEST_LOGGING, receive_webhook
from shared.config import WebhookIngressSettings
from shared.request_logging import setup_request_logging

WEBHOOK_PATH = "/webhooks/payrails"
CONNECTION_NAME = "recon-ingress"


def publisher_ctx(settings: WebhookIngressSettings) -> CleanupContext:
    """The cleanup context of the publisher WEBHOOK_PUBLISHER names."""
    if settings.webhook_publisher == "aio-pika":
        return aio_pika_broker_ctx(CONNECTION_NAME)
    return broker_ctx


def create_webhook_app(settings: WebhookIngressSettings) -> web.Application:
    """The app behind ``python -m ingress webhooks``."""
    app = web.Application(client_max_size=settings.webhook_max_body_bytes)
    setup_request_logging(app, REQUEST_LOGGING)  # settled after the publisher closes
    app[SETTINGS] = app[WEBHOOK_SETTINGS] = settings
    app.cleanup_ctx.append(publisher_ctx(settings))
    app.router.add_post(WEBHOOK_PATH, receive_webhook, name="webhook")
    add_health_routes(app, {"broker": broker_ready}, admin_port=settings.webhook_admin_port)
    return app
