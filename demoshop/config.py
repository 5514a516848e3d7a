"""The demo shop's settings, read once from the environment (DEMO_SHOP_*, LOG_*)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from shared.config import SANDBOX_MERCHANT_API_KEY, EnvReader, Secret
from shared.errors import ConfigError


@dataclass(frozen=True, slots=True)
class DemoShopConfig:
    """Where the shop listens, which checkout it sells through, and with which API key."""

    host: str = "127.0.0.1"
    port: int = 8001
    # The checkout's merchant API, reached server to server (not the shopper-facing origin).
    checkout_url: str = "http://127.0.0.1:8000"
    api_key: Secret = field(default_factory=lambda: Secret(SANDBOX_MERCHANT_API_KEY))
    # Longest wait for one merchant API call, connecting included.
    timeout_seconds: float = 10.0
    log_level: str = "INFO"
    log_format: str = "json"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DemoShopConfig:
        """Read and validate the settings; raise ConfigError naming the bad variable."""
        r = EnvReader(os.environ if env is None else env)
        d = cls()
        return cls(
            host=r.text("DEMO_SHOP_HOST", d.host),
            port=r.integer("DEMO_SHOP_PORT", d.port),
            checkout_url=_http_url(
                "DEMO_SHOP_CHECKOUT_URL", r.text("DEMO_SHOP_CHECKOUT_URL", d.checkout_url)
            ),
            api_key=Secret(r.text("DEMO_SHOP_API_KEY", d.api_key.reveal())),
            timeout_seconds=r.number(
                "DEMO_SHOP_TIMEOUT_SECONDS", d.timeout_seconds, minimum=0.1, maximum=300.0
            ),
            log_level=r.text("LOG_LEVEL", d.log_level).upper(),
            log_format=r.choice("LOG_FORMAT", d.log_format, ("json", "console")),
        )


def _http_url(name: str, value: str) -> str:
    """An http(s) origin, optionally with a path prefix, without its trailing slash."""
    try:
        parts = urlsplit(value)
        host, _ = parts.hostname, parts.port  # .port raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigError(f"{name} is not a URL: {value!r}") from exc
    if parts.scheme not in ("http", "https") or not host or parts.query or parts.fragment:
        raise ConfigError(f"{name} must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")
