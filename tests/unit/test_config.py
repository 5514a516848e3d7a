"""Settings: defaults that work locally, precise errors, secrets hidden, one class per process."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import CliRunner

from ingress import __main__ as ingress_main
from shared.config import (
    REAL_PAYRAILS_SECRETS,
    EnvSettings,
    WebhookIngressSettings,
    WorkerSettings,
    is_sandbox_url,
    parse_webhook_keys,
)
from shared.errors import ConfigError
from tests.settings import Settings
from worker import __main__ as worker_main
from worker import cli as recon_cli

REAL_PAYRAILS = {"PAYRAILS_BASE_URL": "https://api.payrails.io"}
# Live-looking values, long enough for the real-Payrails guard (webhook and API keys >= 32 bytes).
LIVE = {
    "PAYRAILS_CLIENT_SECRET": "live-client-secret",
    "PAYRAILS_WEBHOOK_SECRETS": "whsec-live-0123456789abcdef0123456789",
    "MERCHANT_API_KEYS": "mk-live-0123456789abcdef0123456789abcdef",
}
# process -> the settings class its entrypoint loads (``recon`` runs beside the worker)
PROCESS_SETTINGS: dict[str, type[EnvSettings]] = {
    "webhooks": ingress_main.APP_SETTINGS["webhooks"],
    "checkout": ingress_main.APP_SETTINGS["checkout"],
    "worker": WorkerSettings,
    "recon": WorkerSettings,
}
# process -> the real secrets it uses: those its settings class declares
PROCESS_SECRETS = {process: cls.real_secrets() for process, cls in PROCESS_SETTINGS.items()}


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
            "MERCHANT_API_KEYS": "merchant-key-value",
            "DATABASE_URL": "postgresql+psycopg://app:db-pa55word@db:5432/recon",
        }
    )
    text = repr(settings)
    assert "s3cr3t-value" not in text
    assert "whsec-value" not in text
    assert "merchant-key-value" not in text
    assert "guest:guest" not in text
    assert "db-pa55word" not in text


def test_each_process_requires_exactly_the_secrets_it_uses() -> None:
    assert PROCESS_SECRETS == {
        "webhooks": ("PAYRAILS_WEBHOOK_SECRETS",),
        "checkout": ("PAYRAILS_CLIENT_SECRET", "MERCHANT_API_KEYS"),
        "worker": ("PAYRAILS_CLIENT_SECRET",),
        "recon": ("PAYRAILS_CLIENT_SECRET",),
    }


def test_real_payrails_refuses_the_sandbox_default_secrets() -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"PAYRAILS_BASE_URL": "https://api.payrails.io"})
    for name in REAL_PAYRAILS_SECRETS:
        assert f"{name} must be set" in str(refused.value)


def test_real_payrails_starts_with_explicit_secrets() -> None:
    settings = Settings.from_env({**REAL_PAYRAILS, **LIVE})
    assert settings.payrails_base_url == "https://api.payrails.io"


def test_real_payrails_by_default_refuses_a_process_given_only_one_secret() -> None:
    env = {**REAL_PAYRAILS, "PAYRAILS_CLIENT_SECRET": LIVE["PAYRAILS_CLIENT_SECRET"]}
    with pytest.raises(ConfigError, match="so PAYRAILS_WEBHOOK_SECRETS must be set"):
        Settings.from_env(env)


@pytest.mark.parametrize("process", PROCESS_SECRETS)
def test_real_payrails_starts_each_process_with_only_the_secrets_it_uses(process: str) -> None:
    requires = PROCESS_SECRETS[process]
    env = {**REAL_PAYRAILS, **{name: LIVE[name] for name in requires}}

    settings = PROCESS_SETTINGS[process].from_env(env)

    assert settings.payrails_base_url == "https://api.payrails.io"


@pytest.mark.parametrize("process", PROCESS_SECRETS)
def test_real_payrails_refuses_each_process_without_the_secret_it_uses(process: str) -> None:
    requires = PROCESS_SECRETS[process]
    first, *others = requires
    unused = set(REAL_PAYRAILS_SECRETS) - set(requires)
    env = {**REAL_PAYRAILS, **{name: LIVE[name] for name in (*others, *unused)}}

    with pytest.raises(ConfigError, match=f"so {first} must be set") as refused:
        PROCESS_SETTINGS[process].from_env(env)

    for name in unused:
        assert name not in str(refused.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PAYRAILS_CLIENT_SECRET", "sandbox-secret"),
        ("PAYRAILS_WEBHOOK_SECRETS", "sandbox-webhook-secret"),
        ("PAYRAILS_WEBHOOK_SECRETS", f"{LIVE['PAYRAILS_WEBHOOK_SECRETS']},sandbox-webhook-secret"),
        ("MERCHANT_API_KEYS", "sandbox-merchant-key"),
    ],
)
def test_real_payrails_refuses_a_sandbox_default_even_when_set_explicitly(
    name: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=f"{name} holds the sandbox's public default value"):
        Settings.from_env({**REAL_PAYRAILS, **LIVE, name: value})


@pytest.mark.parametrize("name", ["PAYRAILS_WEBHOOK_SECRETS", "MERCHANT_API_KEYS"])
def test_real_payrails_refuses_keys_shorter_than_32_bytes(name: str) -> None:
    with pytest.raises(ConfigError, match=f"every key in {name} must be at least 32 bytes"):
        Settings.from_env({**REAL_PAYRAILS, **LIVE, name: "x" * 31})


def test_real_payrails_counts_hex_webhook_keys_in_decoded_bytes() -> None:
    short = "hex:" + "ab" * 31  # 62 hex digits, 31 bytes
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        Settings.from_env({**REAL_PAYRAILS, **LIVE, "PAYRAILS_WEBHOOK_SECRETS": short})
    Settings.from_env({**REAL_PAYRAILS, **LIVE, "PAYRAILS_WEBHOOK_SECRETS": "hex:" + "ab" * 32})


@pytest.mark.parametrize(
    "url",
    [
        "HTTPS://api.payrails.io",
        "https://API.PAYRAILS.IO",
        "HTTP://API.PAYRAILS.IO:8090",
        "http://LOCALHOST.EXAMPLE.COM",
        "https://127.0.0.1:8090",
        "HTTP://203.0.113.7",
        "http://[2001:DB8::1]:8090",
        "http://203.0.113.7:8090",
        "http://10.0.0.5:8090",
        "http://sandbox:8090",
        "http://localhost.example.com",
        "ftp://127.0.0.1",
    ],
)
def test_anything_but_a_plain_http_loopback_url_is_a_real_payrails(url: str) -> None:
    assert not is_sandbox_url(url)
    with pytest.raises(ConfigError, match="is a real Payrails"):
        Settings.from_env({"PAYRAILS_BASE_URL": url})


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8090", "HTTP://LOCALHOST:8090", "http://127.1.2.3", "http://[::1]:8090"],
)
def test_a_plain_http_loopback_url_in_any_case_is_the_sandbox(url: str) -> None:
    assert is_sandbox_url(url)
    assert Settings.from_env({"PAYRAILS_BASE_URL": url}).payrails_client_secret.reveal()


def test_settings_never_read_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_PORT", "18080")

    assert WebhookIngressSettings().webhook_port == 8080
    assert WebhookIngressSettings.from_env({}).webhook_port == 8080


def test_a_process_ignores_the_variables_of_other_processes() -> None:
    settings = WebhookIngressSettings.from_env({"WORKER_PREFETCH": "not-a-number"})
    assert not hasattr(settings, "worker_prefetch")


def test_an_invalid_secret_is_named_but_never_shown() -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL") as refused:
        Settings.from_env({"DATABASE_URL": "postgresql://app:db-pa55word@db/recon"})
    assert "db-pa55word" not in str(refused.value)
    assert refused.value.__cause__ is None
    assert refused.value.__suppress_context__


@pytest.fixture
def real_payrails_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """os.environ pointing at real Payrails, with no real secret set."""
    monkeypatch.setenv("PAYRAILS_BASE_URL", "https://api.payrails.io")
    for name in REAL_PAYRAILS_SECRETS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_webhook_ingress_entrypoint_exits_naming_the_missing_webhook_secret(
    real_payrails_env: pytest.MonkeyPatch,
) -> None:
    real_payrails_env.setenv("PAYRAILS_CLIENT_SECRET", LIVE["PAYRAILS_CLIENT_SECRET"])

    with pytest.raises(SystemExit) as exited:
        ingress_main.main(["webhooks"])

    assert "so PAYRAILS_WEBHOOK_SECRETS must be set" in str(exited.value.code)


ENTRYPOINTS_CALLING_PAYRAILS: dict[str, Callable[[], None]] = {
    "checkout": lambda: ingress_main.main(["checkout"]),
    "worker": lambda: worker_main.main([]),
}


@pytest.mark.parametrize("process", ENTRYPOINTS_CALLING_PAYRAILS)
def test_the_payrails_calling_entrypoints_exit_naming_the_missing_client_secret(
    real_payrails_env: pytest.MonkeyPatch, process: str
) -> None:
    real_payrails_env.setenv("PAYRAILS_WEBHOOK_SECRETS", LIVE["PAYRAILS_WEBHOOK_SECRETS"])
    real_payrails_env.setenv("MERCHANT_API_KEYS", LIVE["MERCHANT_API_KEYS"])

    with pytest.raises(SystemExit) as exited:
        ENTRYPOINTS_CALLING_PAYRAILS[process]()

    assert "so PAYRAILS_CLIENT_SECRET must be set" in str(exited.value.code)


def test_the_checkout_entrypoint_exits_naming_the_missing_merchant_api_keys(
    real_payrails_env: pytest.MonkeyPatch,
) -> None:
    real_payrails_env.setenv("PAYRAILS_CLIENT_SECRET", LIVE["PAYRAILS_CLIENT_SECRET"])

    with pytest.raises(SystemExit) as exited:
        ingress_main.main(["checkout"])

    assert "so MERCHANT_API_KEYS must be set" in str(exited.value.code)


def test_the_recon_cli_exits_1_naming_the_missing_client_secret(
    real_payrails_env: pytest.MonkeyPatch,
) -> None:
    real_payrails_env.setenv("PAYRAILS_WEBHOOK_SECRETS", LIVE["PAYRAILS_WEBHOOK_SECRETS"])

    result = CliRunner().invoke(recon_cli.cli, ["orders", "show", "any-order"])

    assert result.exit_code == 1
    assert "so PAYRAILS_CLIENT_SECRET must be set" in result.output


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
        ("SWEEPER_OPERATION_STUCK_AFTER_SECONDS", "0.5"),
        ("AUTHORIZATION_CAPTURE_WARNING_SECONDS", "30"),
        ("PAYRAILS_CAPTURE_MODE", "delayed"),
        ("WORKER_RETRY_DELAYS_SECONDS", "1,-5"),
        ("LOG_FORMAT", "xml"),
        ("LOG_LEVEL", "loud"),
        ("DATABASE_URL", "postgresql://nodriver/db"),
        ("AMQP_PUBLISH_BATCH_WINDOW_SECONDS", "-0.001"),
        ("AMQP_PUBLISH_BATCH_WINDOW_SECONDS", "0.5"),
        ("PAYMENT_RETRY_WINDOW_SECONDS", "0"),
        ("PAYMENT_RETRY_WINDOW_SECONDS", "a day"),
    ],
)
def test_a_bad_variable_is_named_in_the_error(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize(("raw", "mode"), [("instant", "instant"), ("Manual", "manual")])
def test_the_capture_mode_is_read_in_any_case(raw: str, mode: str) -> None:
    assert Settings.from_env({"PAYRAILS_CAPTURE_MODE": raw}).payrails_capture_mode == mode
