"""The sandbox's settings, read once from the environment: SANDBOX_* and the PAYRAILS_* credentials.

The sandbox reads the same ``PAYRAILS_CLIENT_ID`` / ``PAYRAILS_CLIENT_SECRET`` /
``PAYRAILS_WORKSPACE_ID`` / ``PAYRAILS_WEBHOOK_SECRETS`` as the service (the same building blocks
of ``shared.config`` declare them), so one environment configures both sides.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal

from pydantic import BeforeValidator, Field, field_validator
from pydantic_settings import NoDecode

from sandbox.capture import CaptureMode
from sandbox.faults import EndpointFaults, Faults, KnobError, WebhookFaults
from shared.config import (
    LoggingSettings,
    PayrailsCredentials,
    Secret,
    WebhookKey,
    WebhookSecrets,
    parse_numbers,
)

StatusShape = Literal["documented", "seed"]
STATUS_SHAPES: tuple[StatusShape, ...] = ("documented", "seed")
# A repeated idempotency key with another body: Payrails was seen replaying the first answer;
# whether it may refuse instead (409) is not documented, so both can be played.
KeyReuse = Literal["replay", "refuse"]
KEY_REUSES: tuple[KeyReuse, ...] = ("replay", "refuse")
# About 10 tries over about 6 hours, as Payrails is said to do.
DEFAULT_WEBHOOK_SCHEDULE = (30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 2400.0, 4800.0, 9600.0)


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Every sandbox knob; the runtime-changeable ones can be set via ``PUT /_sandbox/config``."""

    host: str = "0.0.0.0"
    port: int = 8090
    public_url: str | None = None
    log_level: str = "INFO"
    log_format: str = "json"
    client_id: str = "sandbox-client"
    client_secret: Secret = field(default_factory=lambda: Secret("sandbox-secret"))
    workspace_id: str = "sandbox-workspace"
    webhook_keys: tuple[WebhookKey, ...] = (WebhookKey(b"sandbox-webhook-secret"),)
    webhook_url: str = "http://127.0.0.1:8080/webhooks/payrails"
    webhook_retry_schedule_seconds: tuple[float, ...] = DEFAULT_WEBHOOK_SCHEDULE
    webhook_timeout_seconds: float = 10.0
    pending_webhooks: bool = True
    token_ttl_seconds: int = 600
    max_wait_seconds: float = 30.0
    action_delay_seconds: float = 0.2
    # An unanswered 3-D Secure challenge expires (Payrails' authorize example: PT30M).
    challenge_expiry_seconds: float = 1800.0
    status_shape: StatusShape = "documented"
    trailing_pending_after_decline: bool = True
    # Payrails' default: captured automatically right after the authorization.
    capture_mode: CaptureMode = "instant"
    capture_delay_seconds: float = 0.0  # the "delayed" mode's delay
    idempotency_key_reuse: KeyReuse = "replay"
    random_seed: int | None = None
    faults: Faults = field(default_factory=Faults)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SandboxConfig:
        """Read and validate the sandbox settings; raise ConfigError naming the bad variable."""
        return SandboxEnv.from_env(env).config()

    def to_json(self) -> dict[str, object]:
        """The non-secret settings, as the control API shows them."""
        return {
            "publicUrl": self.public_url,
            "workspaceId": self.workspace_id,
            "webhookUrl": self.webhook_url,
            "webhookRetryScheduleSeconds": list(self.webhook_retry_schedule_seconds),
            "webhookTimeoutSeconds": self.webhook_timeout_seconds,
            "pendingWebhooks": self.pending_webhooks,
            "tokenTtlSeconds": self.token_ttl_seconds,
            "maxWaitSeconds": self.max_wait_seconds,
            "actionDelaySeconds": self.action_delay_seconds,
            "challengeExpirySeconds": self.challenge_expiry_seconds,
            "statusShape": self.status_shape,
            "trailingPendingAfterDecline": self.trailing_pending_after_decline,
            "captureMode": self.capture_mode,
            "captureDelaySeconds": self.capture_delay_seconds,
            "idempotencyKeyReuse": self.idempotency_key_reuse,
        }


Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Seconds = Annotated[float, Field(ge=0.0)]


def _endpoint_faults(value: object) -> object:
    """SANDBOX_ENDPOINT_FAULTS: JSON of endpoint name -> knobs."""
    if not isinstance(value, str):
        return value
    try:
        return Faults.endpoints_from_json(json.loads(value))
    except (ValueError, KnobError) as exc:
        raise ValueError(f"SANDBOX_ENDPOINT_FAULTS is invalid: {exc}") from None


class SandboxEnv(LoggingSettings, PayrailsCredentials, WebhookSecrets):
    """Every variable ``python -m sandbox`` reads; ``config()`` makes the SandboxConfig of them."""

    # An empty SANDBOX_WEBHOOK_URL means "deliver no webhooks", not "the default".
    empty_is_a_value: ClassVar[frozenset[str]] = frozenset({"SANDBOX_WEBHOOK_URL"})

    sandbox_host: str = "0.0.0.0"
    sandbox_port: Annotated[int, Field(ge=0)] = 8090
    sandbox_public_url: str | None = None
    sandbox_webhook_url: str = "http://127.0.0.1:8080/webhooks/payrails"
    sandbox_webhook_retry_schedule_seconds: Annotated[
        tuple[float, ...],
        NoDecode,
        BeforeValidator(lambda v: parse_numbers(v) if isinstance(v, str) else v),
    ] = DEFAULT_WEBHOOK_SCHEDULE
    sandbox_webhook_timeout_seconds: Seconds = 10.0
    sandbox_pending_webhooks: bool = True
    sandbox_token_ttl_seconds: Annotated[int, Field(ge=0)] = 600
    sandbox_max_wait_seconds: Seconds = 30.0
    sandbox_action_delay_seconds: Seconds = 0.2
    sandbox_challenge_expiry_seconds: Seconds = 1800.0
    sandbox_status_shape: StatusShape = "documented"
    sandbox_trailing_pending_after_decline: bool = True
    sandbox_capture_mode: CaptureMode = "instant"
    sandbox_capture_delay_seconds: Seconds = 0.0
    sandbox_idempotency_key_reuse: KeyReuse = "replay"
    sandbox_random_seed: Annotated[int, Field(ge=0)] | None = None
    # Faults of every endpoint ("*"), then per endpoint (which win), then of webhook deliveries.
    sandbox_error_rate: Rate = 0.0
    sandbox_latency_seconds: Seconds = 0.0
    sandbox_rate_limit_rate: Rate = 0.0
    sandbox_retry_after_seconds: Seconds = 1.0
    sandbox_hang_rate: Rate = 0.0
    sandbox_hang_seconds: Seconds = 60.0
    sandbox_drop_response_rate: Rate = 0.0
    sandbox_endpoint_faults: Annotated[
        dict[str, EndpointFaults], NoDecode, BeforeValidator(_endpoint_faults)
    ] = Field(default_factory=dict)
    sandbox_webhook_duplicate_rate: Rate = 0.0
    sandbox_webhook_delay_rate: Rate = 0.0
    sandbox_webhook_delay_min_seconds: Seconds = 0.0
    sandbox_webhook_delay_max_seconds: Seconds = 2.0
    sandbox_webhook_drop_rate: Rate = 0.0
    sandbox_webhook_hold_rate: Rate = 0.0

    @field_validator(
        "sandbox_status_shape",
        "sandbox_capture_mode",
        "sandbox_idempotency_key_reuse",
        mode="before",
    )
    @classmethod
    def lower_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    def config(self) -> SandboxConfig:
        return SandboxConfig(
            host=self.sandbox_host,
            port=self.sandbox_port,
            public_url=self.sandbox_public_url,
            log_level=self.log_level,
            log_format=self.log_format,
            client_id=self.payrails_client_id,
            client_secret=self.payrails_client_secret,
            workspace_id=self.payrails_workspace_id,
            webhook_keys=self.payrails_webhook_keys,
            webhook_url=self.sandbox_webhook_url,
            webhook_retry_schedule_seconds=self.sandbox_webhook_retry_schedule_seconds,
            webhook_timeout_seconds=self.sandbox_webhook_timeout_seconds,
            pending_webhooks=self.sandbox_pending_webhooks,
            token_ttl_seconds=self.sandbox_token_ttl_seconds,
            max_wait_seconds=self.sandbox_max_wait_seconds,
            action_delay_seconds=self.sandbox_action_delay_seconds,
            challenge_expiry_seconds=self.sandbox_challenge_expiry_seconds,
            status_shape=self.sandbox_status_shape,
            trailing_pending_after_decline=self.sandbox_trailing_pending_after_decline,
            capture_mode=self.sandbox_capture_mode,
            capture_delay_seconds=self.sandbox_capture_delay_seconds,
            idempotency_key_reuse=self.sandbox_idempotency_key_reuse,
            random_seed=self.sandbox_random_seed,
            faults=self._faults(),
        )

    def _faults(self) -> Faults:
        everywhere = EndpointFaults(
            error_rate=self.sandbox_error_rate,
            latency_seconds=self.sandbox_latency_seconds,
            rate_limit_rate=self.sandbox_rate_limit_rate,
            retry_after_seconds=self.sandbox_retry_after_seconds,
            hang_rate=self.sandbox_hang_rate,
            hang_seconds=self.sandbox_hang_seconds,
            drop_response_rate=self.sandbox_drop_response_rate,
        )
        endpoints: dict[str, EndpointFaults] = {}
        if everywhere != EndpointFaults():
            endpoints["*"] = everywhere
        endpoints.update(self.sandbox_endpoint_faults)
        webhooks = WebhookFaults(
            duplicate_rate=self.sandbox_webhook_duplicate_rate,
            delay_rate=self.sandbox_webhook_delay_rate,
            delay_min_seconds=self.sandbox_webhook_delay_min_seconds,
            delay_max_seconds=self.sandbox_webhook_delay_max_seconds,
            drop_rate=self.sandbox_webhook_drop_rate,
            hold_rate=self.sandbox_webhook_hold_rate,
        )
        return Faults(webhooks=webhooks, endpoints=endpoints)
