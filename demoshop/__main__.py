"""``python -m demoshop``: serve the demo shop until SIGTERM/SIGINT."""

from __future__ import annotations

import os
import sys

import structlog

from demoshop.app import create_demo_shop_app
from demoshop.config import DemoShopConfig
from shared.errors import ConfigError
from shared.http_server import run_stand_in
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
    run_stand_in(create_demo_shop_app(config), config.host, config.port)


if __name__ == "__main__":
    main()
