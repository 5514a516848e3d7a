"""scripts/run.py's decisions, without starting anything."""

from __future__ import annotations

import socket

import pytest

from scripts.run import (
    banner,
    main,
    plan,
    ports_in_use,
    public_base_url,
    sandbox_with_real_secrets,
)
from tests.ports import free_port
from tests.settings import Settings

# TEST-NET-1 (RFC 5737): never a real host, never "local".
UNREACHABLE_HOST = "192.0.2.1"
REAL_PAYRAILS = {
    "PAYRAILS_BASE_URL": "https://api.staging.payrails.io",
    "PAYRAILS_CLIENT_SECRET": "real-secret",
    "PAYRAILS_WEBHOOK_SECRETS": "real-webhook-secret-of-at-least-32-bytes",
    "MERCHANT_API_KEYS": "real-merchant-key-of-at-least-32-bytes",
}


def test_the_sandbox_plays_payrails_for_a_loopback_base_url() -> None:
    stack = plan(Settings(payrails_base_url="http://127.0.0.1:18090"), {})
    sandbox = stack.children[0]
    assert [c.name for c in stack.children] == [
        "sandbox",
        "webhooks",
        "checkout",
        "worker",
        "demoshop",
    ]
    assert sandbox.env["SANDBOX_PORT"] == "18090"
    assert sandbox.env["SANDBOX_WEBHOOK_URL"] == "http://127.0.0.1:8080/webhooks/payrails"


def test_a_real_payrails_base_url_with_its_secrets_leaves_the_sandbox_and_demo_shop_out() -> None:
    settings = Settings.from_env(REAL_PAYRAILS)
    stack = plan(settings, REAL_PAYRAILS)
    assert [c.name for c in stack.children] == ["webhooks", "checkout", "worker"]
    assert "Demo shop" not in dict(stack.urls)
    assert "Start here" not in banner(stack)


def test_a_real_payrails_base_url_without_its_secrets_starts_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Settings refuse it: the sandbox's default secrets must never sign real traffic."""
    assert main({"PAYRAILS_BASE_URL": "https://api.staging.payrails.io"}) == 2
    out = capsys.readouterr().out
    assert "configuration error" in out
    for name in ("PAYRAILS_CLIENT_SECRET", "PAYRAILS_WEBHOOK_SECRETS", "MERCHANT_API_KEYS"):
        assert f"{name} must be set explicitly" in out


def test_the_demo_shop_sells_through_this_stacks_checkout_with_its_first_merchant_key() -> None:
    env = {"MERCHANT_API_KEYS": "first-key,second-key", "DEMO_SHOP_PORT": "18001"}
    stack = plan(Settings.from_env({**env, "CHECKOUT_PORT": "18000"}), env)
    shop = stack.children[-1]
    assert shop.name == "demoshop"
    assert shop.env["DEMO_SHOP_CHECKOUT_URL"] == "http://127.0.0.1:18000"
    assert shop.env["DEMO_SHOP_API_KEY"] == "first-key"
    assert (shop.port, shop.health_url) == (18001, "http://127.0.0.1:18001/healthz")


def test_the_demo_shops_own_settings_win() -> None:
    env = {"DEMO_SHOP_CHECKOUT_URL": "http://127.0.0.1:28000", "DEMO_SHOP_API_KEY": "own-key"}
    shop = plan(Settings(), env).children[-1]
    assert shop.env["DEMO_SHOP_CHECKOUT_URL"] == "http://127.0.0.1:28000"
    assert shop.env["DEMO_SHOP_API_KEY"] == "own-key"


def test_the_banner_sends_the_user_to_the_demo_shop_first() -> None:
    stack = plan(Settings(), {"DEMO_SHOP_PORT": "18001"})
    assert stack.urls[0] == ("Demo shop", "http://127.0.0.1:18001/")
    assert "Start here: open http://127.0.0.1:18001/ and buy." in banner(stack).splitlines()


def test_a_bad_demo_shop_setting_is_a_configuration_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main({"DEMO_SHOP_PORT": "eighty"}) == 2
    out = capsys.readouterr().out
    assert "configuration error: DEMO_SHOP_PORT must be an integer" in out


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
        "DEMO_SHOP_PORT": str(free_port()),
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


def test_an_admin_port_already_in_use_is_named_with_its_variable() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(checkout_admin_port=port, payrails_base_url="http://127.0.0.1:18090")
        busy = ports_in_use(plan(settings, {}).children)
    assert any(f"port {port} (CHECKOUT_ADMIN_PORT)" in message for message in busy)
