"""scripts/run.py's decisions, without starting anything."""

from __future__ import annotations

import socket

import pytest

from scripts.run import main, plan, public_base_url, sandbox_with_real_secrets
from shared.config import Settings
from tests.ports import free_port

# TEST-NET-1 (RFC 5737): never a real host, never "local".
UNREACHABLE_HOST = "192.0.2.1"


def names(settings: Settings) -> list[str]:
    return [child.name for child in plan(settings, {}).children]


def test_the_sandbox_plays_payrails_for_a_loopback_base_url() -> None:
    stack = plan(Settings(payrails_base_url="http://127.0.0.1:18090"), {})
    sandbox = stack.children[0]
    assert [c.name for c in stack.children] == ["sandbox", "webhooks", "checkout", "worker"]
    assert sandbox.env["SANDBOX_PORT"] == "18090"
    assert sandbox.env["SANDBOX_WEBHOOK_URL"] == "http://127.0.0.1:8080/webhooks/payrails"


def test_a_real_payrails_base_url_with_its_secrets_leaves_the_sandbox_out() -> None:
    settings = Settings.from_env(
        {
            "PAYRAILS_BASE_URL": "https://api.staging.payrails.io",
            "PAYRAILS_CLIENT_SECRET": "real-secret",
            "PAYRAILS_WEBHOOK_SECRETS": "real-webhook-secret",
        }
    )
    assert names(settings) == ["webhooks", "checkout", "worker"]


def test_a_real_payrails_base_url_without_its_secrets_starts_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Settings refuse it: the sandbox's default secrets must never sign real traffic."""
    assert main({"PAYRAILS_BASE_URL": "https://api.staging.payrails.io"}) == 2
    out = capsys.readouterr().out
    assert "configuration error" in out
    assert "PAYRAILS_CLIENT_SECRET and PAYRAILS_WEBHOOK_SECRETS must be set" in out


def test_the_storefront_origin_follows_the_checkout_port_unless_public_base_url_is_set() -> None:
    assert public_base_url(Settings(checkout_port=18000)) == "http://127.0.0.1:18000"
    custom = Settings(checkout_port=18000, public_base_url="https://shop.example")
    assert public_base_url(custom) == "https://shop.example"


def test_unreachable_remote_services_print_what_to_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Remote hosts: nothing to start locally, no compose; the runner explains and exits 2."""
    env = {
        "DATABASE_URL": f"postgresql+psycopg://postgres@{UNREACHABLE_HOST}:5432/payrails",
        "AMQP_URL": f"amqp://guest:guest@{UNREACHABLE_HOST}:5672/",
        "WEBHOOK_PORT": str(free_port()),
        "CHECKOUT_PORT": str(free_port()),
        "WORKER_METRICS_PORT": str(free_port()),
        "PAYRAILS_BASE_URL": f"http://127.0.0.1:{free_port()}",
    }
    assert main(env) == 2
    out = capsys.readouterr().out
    assert f"PostgreSQL at {UNREACHABLE_HOST}:5432 (DATABASE_URL) is not reachable." in out
    assert "docker compose -f deploy/compose.yaml up -d postgres rabbitmq" in out


def test_a_port_already_in_use_is_named_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = main({"CHECKOUT_PORT": str(port), "DATABASE_URL": "postgresql+psycopg://x@h/db"})
    assert code == 1
    assert f"port {port} (CHECKOUT_PORT) is already in use" in capsys.readouterr().out


def test_secrets_set_with_the_sandbox_base_url_get_a_note_naming_them() -> None:
    settings = Settings.from_env({"PAYRAILS_CLIENT_SECRET": "looks-real"})
    note = sandbox_with_real_secrets(settings)
    assert note is not None
    assert "PAYRAILS_CLIENT_SECRET" in note
    assert "PAYRAILS_BASE_URL" in note
    assert "PAYRAILS_WEBHOOK_SECRETS" not in note
    assert "looks-real" not in note


def test_the_default_secrets_with_the_sandbox_get_no_note() -> None:
    assert sandbox_with_real_secrets(Settings()) is None
