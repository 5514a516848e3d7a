"""Settings: defaults that work locally, precise errors, secrets hidden."""

from __future__ import annotations

import pytest

from shared.config import Settings, parse_webhook_keys
from shared.errors import ConfigError


def test_defaults_work_with_an_empty_environment() -> None:
    settings = Settings.from_env({})
    assert settings.webhook_port == 8080
    assert settings.checkout_port == 8000
    assert settings.worker_metrics_port == 9100


def test_repr_hides_every_secret() -> None:
    settings = Settings.from_env(
        {
            "PAYRAILS_CLIENT_SECRET": "s3cr3t-value",
            "PAYRAILS_WEBHOOK_SECRETS": "whsec-value",
            "DATABASE_URL": "postgresql+psycopg://app:db-pa55word@db:5432/recon",
        }
    )
    text = repr(settings)
    assert "s3cr3t-value" not in text
    assert "whsec-value" not in text
    assert "guest:guest" not in text
    assert "db-pa55word" not in text


def test_real_payrails_refuses_the_sandbox_default_secrets() -> None:
    with pytest.raises(ConfigError, match="PAYRAILS_CLIENT_SECRET and PAYRAILS_WEBHOOK_SECRETS"):
        Settings.from_env({"PAYRAILS_BASE_URL": "https://api.payrails.io"})


def test_real_payrails_starts_with_explicit_secrets() -> None:
    settings = Settings.from_env(
        {
            "PAYRAILS_BASE_URL": "https://api.payrails.io",
            "PAYRAILS_CLIENT_SECRET": "live-secret",
            "PAYRAILS_WEBHOOK_SECRETS": "hex:00ff",
        }
    )
    assert settings.payrails_base_url == "https://api.payrails.io"


def test_webhook_secrets_accept_hex_and_plain_keys() -> None:
    keys = parse_webhook_keys("plain-key, hex:00ff10")
    assert [k.material for k in keys] == [b"plain-key", b"\x00\xff\x10"]


@pytest.mark.parametrize("raw", ["", " , ", "hex:zz", "hex:"])
def test_invalid_webhook_secrets_are_rejected_at_startup(raw: str) -> None:
    with pytest.raises(ConfigError, match="PAYRAILS_WEBHOOK_SECRETS"):
        parse_webhook_keys(raw)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WEBHOOK_PORT", "eighty"),
        ("WORKER_PREFETCH", "0"),
        ("WORKER_RETRY_DELAYS_SECONDS", "1,-5"),
        ("LOG_FORMAT", "xml"),
        ("LOG_LEVEL", "loud"),
        ("DATABASE_URL", "postgresql://nodriver/db"),
    ],
)
def test_a_bad_variable_is_named_in_the_error(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})
