"""The demo shop's settings, read once from the environment (DEMO_SHOP_*, LOG_*)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator

from shared.config import SANDBOX_MERCHANT_API_KEY, LoggingSettings, Secret


class DemoShopConfig(LoggingSettings):
    """Where the shop listens, which checkout it sells through, and with which API key."""

    host: str = Field(default="127.0.0.1", validation_alias="DEMO_SHOP_HOST")
    port: int = Field(default=8001, ge=0, validation_alias="DEMO_SHOP_PORT")
    # The checkout's merchant API, reached server to server (not the shopper-facing origin).
    checkout_url: str = Field(
        default="http://127.0.0.1:8000", validation_alias="DEMO_SHOP_CHECKOUT_URL"
    )
    api_key: Secret = Field(
        default=Secret(SANDBOX_MERCHANT_API_KEY), validation_alias="DEMO_SHOP_API_KEY"
    )
    # Longest wait for one merchant API call, connecting included.
    timeout_seconds: float = Field(
        default=10.0, ge=0.1, le=300.0, validation_alias="DEMO_SHOP_TIMEOUT_SECONDS"
    )

    @field_validator("checkout_url")
    @classmethod
    def http_url(cls, value: str) -> str:
        """An http(s) origin, optionally with a path prefix, without its trailing slash."""
        name = "DEMO_SHOP_CHECKOUT_URL"
        try:
            parts = urlsplit(value)
            host, _ = parts.hostname, parts.port  # .port raises ValueError for a bad port
        except ValueError:
            raise ValueError(f"{name} is not a URL: {value!r}") from None
        if parts.scheme not in ("http", "https") or not host or parts.query or parts.fragment:
            raise ValueError(f"{name} must be an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")
