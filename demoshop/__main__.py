"""``python -m demoshop``: serve the demo shop until SIGTERM/SIGINT."""

from __future__ import annotations

import os
import sys

import structlog
from aiohttp import web

from demoshop.app import create_demo_shop_app
from demoshop.config import DemoShopConfig
from shared.errors import ConfigError
from shared.event_loop import new_event_loop
from shared.logging import configure_logging


def main() -> None:
    try:
        config = DemoShopConfig.from_env(os.environ)
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")
    configure_logging(config.log_level, json=config.log_format == "json")
    structlog.get_logger("demoshop").info(
        "demoshop.starting", host=config.host, port=config.port, checkout_url=config.checkout_url
    )
    web.run_app(
        create_demo_shop_app(config),
        host=config.host,
        port=config.port,
        print=None,
        shutdown_timeout=5.0,
        loop=new_event_loop(),
    )


if __name__ == "__main__":
    main()
