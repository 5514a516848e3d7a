"""Optional mTLS for calls to Payrails: a client certificate and key, configured by file path."""

from __future__ import annotations

import ssl

from shared.config import Settings
from shared.errors import ConfigError


def build_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A verifying TLS context that presents our client certificate, or None without one."""
    cert, key = settings.payrails_client_cert, settings.payrails_client_key
    if cert is None and key is None:
        return None
    if cert is None:
        raise ConfigError("PAYRAILS_CLIENT_KEY is set but PAYRAILS_CLIENT_CERT is not")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("PAYRAILS_CLIENT_CERT / PAYRAILS_CLIENT_KEY cannot be loaded") from exc
    return context
