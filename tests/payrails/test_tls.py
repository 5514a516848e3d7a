"""mTLS: the client certificate and key are loaded from the configured paths."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

import pytest

from shared.config import Settings
from shared.errors import ConfigError
from shared.payrails.client import open_payrails_client
from shared.payrails.tls import build_ssl_context

FIXTURES = Path(__file__).with_name("fixtures")  # a self-signed pair made for these tests only


def with_files(settings: Settings, cert: Path | None, key: Path | None) -> Settings:
    return dataclasses.replace(
        settings,
        payrails_client_cert=str(cert) if cert else None,
        payrails_client_key=str(key) if key else None,
    )


def test_no_client_certificate_means_no_custom_context(settings: Settings) -> None:
    assert build_ssl_context(with_files(settings, None, None)) is None


def test_client_certificate_and_key_load_into_a_verifying_context(settings: Settings) -> None:
    context = build_ssl_context(
        with_files(settings, FIXTURES / "client.crt", FIXTURES / "client.key")
    )
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


def test_key_without_a_certificate_is_a_config_error(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="PAYRAILS_CLIENT_CERT"):
        build_ssl_context(with_files(settings, None, FIXTURES / "client.key"))


def test_unreadable_certificate_is_a_config_error(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        build_ssl_context(with_files(settings, tmp_path / "missing.crt", None))


async def test_client_opens_with_a_client_certificate(settings: Settings) -> None:
    configured = with_files(settings, FIXTURES / "client.crt", FIXTURES / "client.key")
    async with open_payrails_client(configured) as client:
        assert client is not None
