"""Sandbox settings from the environment, and the fault knobs."""

from __future__ import annotations

import random

import pytest

from sandbox.config import SandboxConfig
from sandbox.faults import Decision, EndpointFaults, FaultInjector, Faults
from shared.errors import ConfigError

ENDPOINT_FAULTS = '{"authorize": {"rateLimitRate": 1, "retryAfterSeconds": 3}}'


def test_defaults_match_the_documented_ports_and_shapes() -> None:
    config = SandboxConfig.from_env({})
    assert config.port == 8090
    assert config.status_shape == "documented"
    assert config.webhook_url == "http://127.0.0.1:8080/webhooks/payrails"
    assert len(config.webhook_retry_schedule_seconds) + 1 == 10
    assert config.max_wait_seconds == 30.0
    assert config.pending_webhooks


def test_environment_sets_credentials_and_knobs() -> None:
    config = SandboxConfig.from_env(
        {
            "PAYRAILS_CLIENT_ID": "id-1",
            "PAYRAILS_CLIENT_SECRET": "s3cret",
            "PAYRAILS_WEBHOOK_SECRETS": "first,second",
            "SANDBOX_STATUS_SHAPE": "seed",
            "SANDBOX_TOKEN_TTL_SECONDS": "5",
            "SANDBOX_WEBHOOK_RETRY_SCHEDULE_SECONDS": "0.1,0.2",
            "SANDBOX_WEBHOOK_DUPLICATE_RATE": "0.5",
            "SANDBOX_ERROR_RATE": "0.1",
            "SANDBOX_ENDPOINT_FAULTS": ENDPOINT_FAULTS,
            "SANDBOX_PENDING_WEBHOOKS": "off",
            "SANDBOX_WEBHOOK_URL": "",
        }
    )
    assert (config.client_id, config.client_secret.reveal()) == ("id-1", "s3cret")
    assert config.webhook_keys[0].material == b"first"
    assert config.status_shape == "seed"
    assert config.token_ttl_seconds == 5
    assert config.webhook_retry_schedule_seconds == (0.1, 0.2)
    assert config.faults.webhooks.duplicate_rate == 0.5
    assert config.faults.endpoints["*"].error_rate == 0.1
    assert config.faults.endpoints["authorize"] == EndpointFaults(
        rate_limit_rate=1.0, retry_after_seconds=3.0
    )
    assert not config.pending_webhooks
    assert config.webhook_url == ""


def test_capture_is_instant_by_default_as_payrails_does() -> None:
    config = SandboxConfig.from_env({})
    assert (config.capture_mode, config.capture_delay_seconds) == ("instant", 0.0)
    assert config.idempotency_key_reuse == "replay"


def test_capture_mode_and_key_reuse_are_read_from_the_environment() -> None:
    config = SandboxConfig.from_env(
        {
            "SANDBOX_CAPTURE_MODE": "Delayed",
            "SANDBOX_CAPTURE_DELAY_SECONDS": "3.5",
            "SANDBOX_IDEMPOTENCY_KEY_REUSE": "refuse",
        }
    )
    assert (config.capture_mode, config.capture_delay_seconds) == ("delayed", 3.5)
    assert config.idempotency_key_reuse == "refuse"


def test_webhook_hold_rate_is_read_from_the_environment() -> None:
    config = SandboxConfig.from_env({"SANDBOX_WEBHOOK_HOLD_RATE": "0.25"})
    assert config.faults.webhooks.hold_rate == 0.25
    assert SandboxConfig.from_env({}).faults.webhooks.hold_rate == 0.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SANDBOX_STATUS_SHAPE", "array"),
        ("SANDBOX_ERROR_RATE", "1.5"),
        ("SANDBOX_WEBHOOK_HOLD_RATE", "1.5"),
        ("SANDBOX_WEBHOOK_HOLD_RATE", "-0.1"),
        ("SANDBOX_WEBHOOK_HOLD_RATE", "often"),
        ("SANDBOX_PORT", "eighty"),
        ("SANDBOX_ENDPOINT_FAULTS", '{"authorize": {"bogus": 1}}'),
        ("SANDBOX_CAPTURE_MODE", "sometimes"),
        ("SANDBOX_CAPTURE_DELAY_SECONDS", "-1"),
        ("SANDBOX_IDEMPOTENCY_KEY_REUSE", "conflict"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        SandboxConfig.from_env({name: value})


def test_times_disarms_an_endpoint_fault_after_that_many_requests() -> None:
    faults = Faults(endpoints={"authorize": EndpointFaults(error_rate=1.0, times=2)})
    injector = FaultInjector(faults, random.Random(1))
    decisions = [injector.decide("authorize").error for _ in range(4)]
    assert decisions == [True, True, False, False]


def test_endpoint_entry_overrides_the_catch_all() -> None:
    faults = Faults(
        endpoints={"*": EndpointFaults(error_rate=1.0), "token": EndpointFaults(latency_seconds=0)}
    )
    injector = FaultInjector(faults, random.Random(1))
    assert injector.decide("token") == Decision()
    assert injector.decide("authorize").error


def test_faults_round_trip_through_json() -> None:
    faults = Faults.from_json(
        {"webhooks": {"dropRate": 0.25}, "endpoints": {"capture": {"hang_rate": 0.5}}}
    )
    assert Faults.from_json(faults.to_json()) == faults
