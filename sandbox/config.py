"""The sandbox's settings, read once from the environment: SANDBOX_* and the PAYRAILS_* credentials.

The sandbox reads the same ``PAYRAILS_CLIENT_ID`` / ``PAYRAILS_CLIENT_SECRET`` /
``PAYRAILS_WEBHOOK_SECRETS`` as the service, so one environment configures both sides.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from sandbox.faults import EndpointFaults, Faults, WebhookFaults
from shared.config import EnvReader, Secret, WebhookKey, parse_webhook_keys
from shared.errors import ConfigError

StatusShape = Literal["documented", "seed"]
STATUS_SHAPES: tuple[StatusShape, ...] = ("documented", "seed")
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
    random_seed: int | None = None
    faults: Faults = field(default_factory=Faults)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SandboxConfig:
        """Read and validate the sandbox settings; raise ConfigError naming the bad variable."""
        r = EnvReader(os.environ if env is None else env)
        d = cls()
        return cls(
            host=r.text("SANDBOX_HOST", d.host),
            port=r.integer("SANDBOX_PORT", d.port),
            public_url=r.optional("SANDBOX_PUBLIC_URL"),
            log_level=r.text("LOG_LEVEL", d.log_level).upper(),
            log_format=r.choice("LOG_FORMAT", d.log_format, ("json", "console")),
            client_id=r.text("PAYRAILS_CLIENT_ID", d.client_id),
            client_secret=Secret(r.text("PAYRAILS_CLIENT_SECRET", d.client_secret.reveal())),
            workspace_id=r.text("PAYRAILS_WORKSPACE_ID", d.workspace_id),
            webhook_keys=parse_webhook_keys(
                r.text("PAYRAILS_WEBHOOK_SECRETS", "sandbox-webhook-secret")
            ),
            webhook_url=r.raw("SANDBOX_WEBHOOK_URL", d.webhook_url),
            webhook_retry_schedule_seconds=r.numbers(
                "SANDBOX_WEBHOOK_RETRY_SCHEDULE_SECONDS", d.webhook_retry_schedule_seconds
            ),
            webhook_timeout_seconds=r.number(
                "SANDBOX_WEBHOOK_TIMEOUT_SECONDS", d.webhook_timeout_seconds
            ),
            pending_webhooks=r.flag("SANDBOX_PENDING_WEBHOOKS", d.pending_webhooks),
            token_ttl_seconds=r.integer("SANDBOX_TOKEN_TTL_SECONDS", d.token_ttl_seconds),
            max_wait_seconds=r.number("SANDBOX_MAX_WAIT_SECONDS", d.max_wait_seconds),
            action_delay_seconds=r.number("SANDBOX_ACTION_DELAY_SECONDS", d.action_delay_seconds),
            challenge_expiry_seconds=r.number(
                "SANDBOX_CHALLENGE_EXPIRY_SECONDS", d.challenge_expiry_seconds
            ),
            status_shape="seed"
            if r.choice("SANDBOX_STATUS_SHAPE", d.status_shape, STATUS_SHAPES) == "seed"
            else "documented",
            trailing_pending_after_decline=r.flag(
                "SANDBOX_TRAILING_PENDING_AFTER_DECLINE", d.trailing_pending_after_decline
            ),
            random_seed=r.optional_integer("SANDBOX_RANDOM_SEED"),
            faults=_faults_from_env(r),
        )

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
        }


def _faults_from_env(r: EnvReader) -> Faults:
    everywhere = EndpointFaults(
        error_rate=r.rate("SANDBOX_ERROR_RATE"),
        latency_seconds=r.number("SANDBOX_LATENCY_SECONDS", 0.0),
        rate_limit_rate=r.rate("SANDBOX_RATE_LIMIT_RATE"),
        retry_after_seconds=r.number("SANDBOX_RETRY_AFTER_SECONDS", 1.0),
        hang_rate=r.rate("SANDBOX_HANG_RATE"),
        hang_seconds=r.number("SANDBOX_HANG_SECONDS", 60.0),
        drop_response_rate=r.rate("SANDBOX_DROP_RESPONSE_RATE"),
    )
    endpoints: dict[str, EndpointFaults] = {}
    if everywhere != EndpointFaults():
        endpoints["*"] = everywhere
    raw = r.optional("SANDBOX_ENDPOINT_FAULTS")
    if raw is not None:
        try:
            endpoints.update(Faults.endpoints_from_json(json.loads(raw)))
        except ValueError as exc:
            raise ConfigError(f"SANDBOX_ENDPOINT_FAULTS is invalid: {exc}") from exc
    webhooks = WebhookFaults(
        duplicate_rate=r.rate("SANDBOX_WEBHOOK_DUPLICATE_RATE"),
        delay_rate=r.rate("SANDBOX_WEBHOOK_DELAY_RATE"),
        delay_min_seconds=r.number("SANDBOX_WEBHOOK_DELAY_MIN_SECONDS", 0.0),
        delay_max_seconds=r.number("SANDBOX_WEBHOOK_DELAY_MAX_SECONDS", 2.0),
        drop_rate=r.rate("SANDBOX_WEBHOOK_DROP_RATE"),
        hold_rate=r.rate("SANDBOX_WEBHOOK_HOLD_RATE"),
    )
    return Faults(webhooks=webhooks, endpoints=endpoints)
