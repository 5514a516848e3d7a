"""``python -m ingress webhooks|checkout``: settings, logging, then serve until SIGTERM."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import MutableMapping

import structlog
from aiohttp import web

from ingress.health import ADMIN_PORT
from shared import http_server
from shared.config import CheckoutSettings, IngressSettings, WebhookIngressSettings
from shared.errors import ConfigError
from shared.logging import configure_logging

# Each app reads its own settings, and so requires only the real secrets it uses: the webhook
# app verifies signatures and never calls Payrails; the checkout calls Payrails and serves the
# merchant API, and never sees a webhook.
APP_SETTINGS: dict[str, type[IngressSettings]] = {
    "webhooks": WebhookIngressSettings,
    "checkout": CheckoutSettings,
}


def build_app(settings: IngressSettings) -> tuple[web.Application, str, int]:
    """The app these settings are for, with the host and port it serves on."""
    if isinstance(settings, CheckoutSettings):
        # Imported lazily: the webhook process never loads the checkout's dependencies.
        from ingress.checkout_app import create_checkout_app

        return create_checkout_app(settings), settings.checkout_host, settings.checkout_port
    if isinstance(settings, WebhookIngressSettings):
        from ingress.webhook_app import create_webhook_app

        return create_webhook_app(settings), settings.webhook_host, settings.webhook_port
    raise TypeError(f"no ingress app reads {type(settings).__name__}")


PLAIN_KEY_VARIABLES = ("MERCHANT_API_KEYS",)


def forget_plain_keys(environ: MutableMapping[str, str]) -> None:
    """Drop the merchant API keys from the environment once the app holds their digests."""
    for name in PLAIN_KEY_VARIABLES:
        environ.pop(name, None)


def main(argv: list[str] | None = None) -> None:
    """Parse the app name, load settings, configure logging and serve."""
    parser = argparse.ArgumentParser(prog="python -m ingress", description=__doc__)
    parser.add_argument("app", choices=APP_SETTINGS, help="which HTTP app to serve")
    args = parser.parse_args(argv)
    try:
        settings = APP_SETTINGS[args.app].from_env(os.environ)
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")
    configure_logging(settings.log_level, json=settings.log_format == "json")
    app, host, port = build_app(settings)
    forget_plain_keys(os.environ)
    structlog.get_logger("ingress").info(
        "ingress.starting",
        app=args.app,
        host=host,
        port=port,
        admin_host=settings.admin_host,
        admin_port=app[ADMIN_PORT],
    )
    # SIGTERM/SIGINT: stop listening, run on_shutdown (the checkout ends its long-polls there,
    # so a waiting place-order answers 202 processing at once), let in-flight requests finish
    # within the grace period, then run the cleanup contexts (the admin server stops first).
    # The server cuts off slow and silent clients (HTTP_*_TIMEOUT_SECONDS).
    http_server.run(
        app,
        host,
        port,
        http_server.HttpLimits.from_settings(settings),
        shutdown_timeout=settings.ingress_shutdown_grace_seconds,
    )


if __name__ == "__main__":
    main()
