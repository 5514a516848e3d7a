"""``python -m sandbox``: serve the Payrails stand-in (SIGTERM/SIGINT shut it down gracefully)."""

from __future__ import annotations

import os

import structlog

from sandbox.app import create_sandbox_app
from sandbox.config import SandboxConfig
from shared.http_server import run_stand_in
from shared.logging import configure_logging


def main() -> None:
    config = SandboxConfig.from_env(os.environ)
    configure_logging(config.log_level, json=config.log_format == "json")
    structlog.get_logger("sandbox").info(
        "sandbox.starting",
        port=config.port,
        status_shape=config.status_shape,
        webhook_url=config.webhook_url or None,
    )
    run_stand_in(create_sandbox_app(config), config.host, config.port)


if __name__ == "__main__":
    main()
