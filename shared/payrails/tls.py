"""TLS for calls to Payrails: an optional CA bundle and an optional mTLS client certificate."""

from __future__ import annotations

import ssl

from shared.config import PayrailsClientSettings
from shared.errors import ConfigError


def build_ssl_context(settings: PayrailsClientSettings) -> ssl.SSLContext | None:
    """A verifying TLS context with our CA and client certificate, or None when neither is set."""
    cert, key = settings.payrails_client_cert, settings.payrails_client_key
    if cert is None and key is None and settings.payrails_ca_file is None:
        return None
    if cert is None and key is not None:
        raise ConfigError("PAYRAILS_CLIENT_KEY is set but PAYRAILS_CLIENT_CERT is not")
    context = _verifying_context(settings.payrails_ca_file)
    if cert is not None:
        _load_client_certificate(context, cert, key)
    return context


def _verifying_context(ca_file: str | None) -> ssl.SSLContext:
    """Verify the server against ``ca_file``, or the system's trust store when None."""
    try:
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("PAYRAILS_CA_FILE cannot be loaded") from exc


def _load_client_certificate(context: ssl.SSLContext, cert: str, key: str | None) -> None:
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)
    except (OSError, ssl.SSLError) as exc:
        message = "PAYRAILS_CLIENT_CERT / PAYRAILS_CLIENT_KEY cannot be loaded"
        raise ConfigError(message) from exc
