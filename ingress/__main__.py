"""``python -m ingress webhooks|checkout``: settings, logging, then serve until SIGTERM."""

from __future__ import annotations

import argparse
import sys

import structlog
from aiohttp import web

from ingress.health import ADMIN_PORT
from shared import http_server
from shared.config import SERVES_MERCHANTS, VERIFIES_WEBHOOKS, Settings
from shared.errors import ConfigError
from shared.logging import configure_logging

APPS = ("webhooks", "checkout")
# The real secrets each app uses: the webhook app verifies signatures and never calls Payrails;
# the checkout calls Payrails and serves the merchant API, and never sees a webhook.
REQUIRED_SECRETS: dict[str, tuple[str, ...]] = {
    "webhooks": VERIFIES_WEBHOOKS,
    "checkout": SERVES_MERCHANTS,
}


def build_app(name: str, settings: Settings) -> tuple[web.Application, str, int]:
    """The named app with the host and port it serves on."""
    if name == "checkout":
        # Imported lazily: the webhook process never loads the checkout's dependencies.
        from ingress.checkout_app import create_checkout_app

        return create_checkout_app(settings), settings.checkout_host, settings.checkout_port
    from ingress.webhook_app import create_webhook_app

    return create_webhook_app(settings), settings.webhook_host, settings.webhook_port


def main(argv: list[str] | None = None) -> None:
    """Parse the app name, load settings, configure logging and serve."""
    parser = argparse.ArgumentParser(prog="python -m ingress", description=__doc__)
    parser.add_argument("app", choices=APPS, help="which HTTP app to serve")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(requires=REQUIRED_SECRETS[args.app])
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")
    configure_logging(settings.log_level, json=settings.log_format == "json")
    app, host, port = build_app(args.app, settings)
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
