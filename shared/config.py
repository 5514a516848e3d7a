"""Typed settings, read once from the environment and validated at start-up.

Nothing else in the service reads ``os.environ``: entrypoints call ``Settings.from_env()`` and
pass the result down.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from shared.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Secret:
    """A string whose repr never shows its value."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class WebhookKey:
    """One HMAC key for webhook signatures, as raw bytes; repr hides it."""

    material: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "WebhookKey('**********')"


def parse_api_keys(raw: str) -> tuple[Secret, ...]:
    """Parse MERCHANT_API_KEYS: comma-separated (several during a rotation), at least one."""
    keys = tuple(Secret(part.strip()) for part in raw.split(",") if part.strip())
    if not keys:
        raise ConfigError("MERCHANT_API_KEYS must hold at least one key")
    return keys


def parse_webhook_keys(raw: str) -> tuple[WebhookKey, ...]:
    """Parse PAYRAILS_WEBHOOK_SECRETS: comma-separated; ``hex:`` marks hex-encoded key bytes."""
    keys: list[WebhookKey] = []
    for index, part in enumerate(p.strip() for p in raw.split(",")):
        if not part:
            continue
        if part.startswith("hex:"):
            try:
                material = bytes.fromhex(part[4:])
            except ValueError as exc:
                raise ConfigError(f"PAYRAILS_WEBHOOK_SECRETS key {index} is not valid hex") from exc
        else:
            material = part.encode()
        if not material:
            raise ConfigError(f"PAYRAILS_WEBHOOK_SECRETS key {index} is empty")
        keys.append(WebhookKey(material))
    if not keys:
        raise ConfigError("PAYRAILS_WEBHOOK_SECRETS must hold at least one key")
    return tuple(keys)


class EnvReader:
    """Typed reads from one environment mapping, with errors that name the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def raw(self, name: str, default: str) -> str:
        """The value as given (stripped), even when empty; ``default`` only when unset."""
        value = self._env.get(name)
        return default if value is None else value.strip()

    def text(self, name: str, default: str) -> str:
        return self._env.get(name, "").strip() or default

    def optional(self, name: str) -> str | None:
        return self._env.get(name, "").strip() or None

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name, default).lower()
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def integer(self, name: str, default: int, *, minimum: int = 0) -> int:
        value = self.optional_integer(name, minimum=minimum)
        return default if value is None else value

    def optional_integer(self, name: str, *, minimum: int = 0) -> int | None:
        raw = self.optional(name)
        if raw is None:
            return None
        try:
            value = int(raw)
        except ValueError as exc:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
        if value < minimum:
            raise ConfigError(f"{name} must be >= {minimum}, got {value}")
        return value

    def number(
        self, name: str, default: float, *, minimum: float = 0.0, maximum: float = math.inf
    ) -> float:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError as exc:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
        if value < minimum:
            raise ConfigError(f"{name} must be >= {minimum}, got {value}")
        if value > maximum:
            raise ConfigError(f"{name} must be <= {maximum}, got {value}")
        return value

    def rate(self, name: str) -> float:
        """A probability between 0 and 1 (default 0)."""
        value = self.number(name, 0.0)
        if value > 1:
            raise ConfigError(f"{name} is a probability between 0 and 1, got {value}")
        return value

    def numbers(
        self, name: str, default: tuple[float, ...], *, positive: bool = False
    ) -> tuple[float, ...]:
        """Comma-separated numbers; ``positive`` demands at least one and each above zero."""
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            values = tuple(float(v) for v in raw.split(",") if v.strip())
        except ValueError as exc:
            raise ConfigError(f"{name} must be comma-separated numbers, got {raw!r}") from exc
        if positive and (not values or any(v <= 0 for v in values)):
            raise ConfigError(f"{name} needs at least one positive number, got {raw!r}")
        if any(v < 0 for v in values):
            raise ConfigError(f"{name} must not hold negative numbers, got {raw!r}")
        return values

    def flag(self, name: str, default: bool) -> bool:
        raw = self._env.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in {"1", "true", "yes", "on"}:
            return True
        if raw in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name} must be a boolean, got {raw!r}")


LogFormat = Literal["json", "console"]
WebhookPublisher = Literal["custom", "aio-pika"]
WEBHOOK_PUBLISHERS: tuple[WebhookPublisher, ...] = ("custom", "aio-pika")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# A publish held longer than this would cost latency for no further batching gain.
MAX_PUBLISH_BATCH_WINDOW_SECONDS = 0.1
# Only ever set explicitly: without them a real Payrails deployment would run on sandbox keys.
REAL_PAYRAILS_SECRETS = ("PAYRAILS_CLIENT_SECRET", "PAYRAILS_WEBHOOK_SECRETS", "MERCHANT_API_KEYS")
# The sandbox's public defaults: refused against a real Payrails, even when set explicitly.
SANDBOX_CLIENT_SECRET = "sandbox-secret"  # noqa: S105 (public on purpose)
SANDBOX_WEBHOOK_SECRET = "sandbox-webhook-secret"  # noqa: S105 (public on purpose)
SANDBOX_MERCHANT_API_KEY = "sandbox-merchant-key"
SANDBOX_DEFAULTS: dict[str, str] = {
    "PAYRAILS_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
    "PAYRAILS_WEBHOOK_SECRETS": SANDBOX_WEBHOOK_SECRET,
    "MERCHANT_API_KEYS": SANDBOX_MERCHANT_API_KEY,
}
# Shortest secret accepted against a real Payrails (HMAC keys should be as long as the hash).
MIN_REAL_SECRET_BYTES = 32
# What each process passes as ``Settings.from_env(requires=...)``: the real secrets it uses, and
# only those (each pod gets only its own secrets). The checkout, the worker and the ``recon`` CLI
# call Payrails with the client secret; only the webhook ingress verifies webhook signatures.
CALLS_PAYRAILS: tuple[str, ...] = ("PAYRAILS_CLIENT_SECRET",)
# The checkout also serves the merchant API, so its API keys must be real too.
SERVES_MERCHANTS: tuple[str, ...] = ("PAYRAILS_CLIENT_SECRET", "MERCHANT_API_KEYS")
VERIFIES_WEBHOOKS: tuple[str, ...] = ("PAYRAILS_WEBHOOK_SECRETS",)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of every process; each field has a README row."""

    log_level: str = "INFO"
    log_format: LogFormat = "json"

    # repr=False: a production URL carries the database password.
    database_url: str = field(
        default="postgresql+psycopg://postgres@127.0.0.1:5432/payrails", repr=False
    )
    database_pool_size: int = 10

    amqp_url: Secret = Secret("amqp://guest:guest@127.0.0.1:5672/")
    amqp_name_prefix: str = ""
    amqp_publish_timeout_seconds: float = 5.0
    # How long a publish may wait to leave with others while earlier ones await their confirm.
    amqp_publish_batch_window_seconds: float = 0.001
    amqp_delivery_limit: int = 50
    amqp_reconnect_interval_seconds: float = 2.0

    payrails_base_url: str = "http://127.0.0.1:8090"
    # Origin the shopper's browser loads the Secure Fields SDK from; None = payrails_base_url.
    payrails_sdk_origin: str | None = None
    payrails_client_id: str = "sandbox-client"
    payrails_client_secret: Secret = Secret(SANDBOX_CLIENT_SECRET)
    payrails_workspace_id: str = "sandbox-workspace"
    payrails_workflow_code: str = "payment-acceptance"
    payrails_webhook_keys: tuple[WebhookKey, ...] = (WebhookKey(SANDBOX_WEBHOOK_SECRET.encode()),)
    payrails_client_cert: str | None = None
    payrails_client_key: str | None = None
    # CA bundle that verifies Payrails' server certificate; None: the system's trust store.
    payrails_ca_file: str | None = None
    payrails_timeout_seconds: float = 15.0
    payrails_max_retries: int = 3
    payrails_retry_backoff_seconds: float = 0.25
    payrails_retry_after_max_seconds: float = 30.0
    payrails_long_poll_seconds: float = 30.0
    payrails_token_refresh_margin_seconds: float = 60.0

    webhook_host: str = "0.0.0.0"
    webhook_port: int = 8080
    webhook_max_body_bytes: int = 1024 * 1024
    # Which publisher the webhook ingress uses (see ingress/publishing.py).
    webhook_publisher: WebhookPublisher = "custom"
    ingress_shutdown_grace_seconds: float = 10.0

    checkout_host: str = "0.0.0.0"
    checkout_port: int = 8000
    public_base_url: str = "http://127.0.0.1:8000"
    checkout_poll_timeout_seconds: float = 25.0
    return_poll_timeout_seconds: float = 25.0
    # Merchant API keys (several during a rotation); the default is the sandbox's and public.
    merchant_api_keys: tuple[Secret, ...] = (Secret(SANDBOX_MERCHANT_API_KEY),)
    checkout_session_ttl_seconds: float = 3600.0
    # place-order and payments/init requests per minute, per checkout session and per address.
    checkout_rate_limit_per_session: int = 30
    checkout_rate_limit_per_address: int = 300
    # Concurrent long-polls (place-order, payment-return) per session and in all.
    checkout_long_polls_per_session: int = 2
    checkout_long_polls_total: int = 256

    # Every HTTP server: slow or idle clients are cut off after these.
    http_header_timeout_seconds: float = 10.0
    http_body_timeout_seconds: float = 10.0
    http_keepalive_timeout_seconds: float = 15.0
    # /metrics and /readyz live on a separate admin port per process, loopback by default.
    admin_host: str = "127.0.0.1"
    webhook_admin_port: int = 9080
    checkout_admin_port: int = 9000

    worker_metrics_port: int = 9100
    worker_prefetch: int = 64
    worker_retry_delays_seconds: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 600.0)
    worker_shutdown_grace_seconds: float = 20.0
    worker_event_batch_size: int = 50
    worker_event_batches: int = 4
    outbox_batch_size: int = 200
    outbox_poll_seconds: float = 1.0
    sweeper_interval_seconds: float = 30.0
    sweeper_stuck_after_seconds: float = 300.0
    sweeper_batch_size: int = 50
    # ``package.module:ClassName`` of the pre-authorize hook; empty: every order is allowed.
    pre_authorize_hook: str = ""

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        requires: Collection[str] = REAL_PAYRAILS_SECRETS,
    ) -> Settings:
        """Read and validate every setting; raise ConfigError naming the bad variable.

        ``requires``: the names of REAL_PAYRAILS_SECRETS this process uses; against a real
        Payrails (an https base URL) each must be set. The default demands all of them.
        """
        unknown = sorted(set(requires) - set(REAL_PAYRAILS_SECRETS))
        if unknown or isinstance(requires, str):
            raise ValueError(f"requires names only {REAL_PAYRAILS_SECRETS}, got {requires!r}")
        source = os.environ if env is None else env
        e = EnvReader(source)
        d = cls()
        log_format = e.text("LOG_FORMAT", d.log_format).lower()
        if log_format not in ("json", "console"):
            raise ConfigError(f"LOG_FORMAT must be json or console, got {log_format!r}")
        database_url = e.text("DATABASE_URL", d.database_url)
        if not database_url.startswith("postgresql+psycopg://"):
            raise ConfigError("DATABASE_URL must start with postgresql+psycopg://")
        base_url = e.text("PAYRAILS_BASE_URL", d.payrails_base_url).rstrip("/")
        _require_real_secrets(base_url, source, requires)
        return cls(
            log_level=e.choice("LOG_LEVEL", d.log_level, LOG_LEVELS).upper(),
            log_format="json" if log_format == "json" else "console",
            database_url=database_url,
            database_pool_size=e.integer("DATABASE_POOL_SIZE", d.database_pool_size, minimum=1),
            amqp_url=Secret(e.text("AMQP_URL", d.amqp_url.reveal())),
            amqp_name_prefix=e.text("AMQP_NAME_PREFIX", d.amqp_name_prefix),
            amqp_publish_timeout_seconds=e.number(
                "AMQP_PUBLISH_TIMEOUT_SECONDS", d.amqp_publish_timeout_seconds, minimum=0.01
            ),
            amqp_publish_batch_window_seconds=e.number(
                "AMQP_PUBLISH_BATCH_WINDOW_SECONDS",
                d.amqp_publish_batch_window_seconds,
                maximum=MAX_PUBLISH_BATCH_WINDOW_SECONDS,
            ),
            amqp_delivery_limit=e.integer("AMQP_DELIVERY_LIMIT", d.amqp_delivery_limit, minimum=1),
            amqp_reconnect_interval_seconds=e.number(
                "AMQP_RECONNECT_INTERVAL_SECONDS", d.amqp_reconnect_interval_seconds, minimum=0.01
            ),
            payrails_base_url=base_url,
            payrails_sdk_origin=(e.optional("PAYRAILS_SDK_ORIGIN") or "").rstrip("/") or None,
            payrails_client_id=e.text("PAYRAILS_CLIENT_ID", d.payrails_client_id),
            payrails_client_secret=Secret(
                e.text("PAYRAILS_CLIENT_SECRET", d.payrails_client_secret.reveal())
            ),
            payrails_workspace_id=e.text("PAYRAILS_WORKSPACE_ID", d.payrails_workspace_id),
            payrails_workflow_code=e.text("PAYRAILS_WORKFLOW_CODE", d.payrails_workflow_code),
            payrails_webhook_keys=parse_webhook_keys(
                e.text("PAYRAILS_WEBHOOK_SECRETS", SANDBOX_WEBHOOK_SECRET)
            ),
            payrails_client_cert=e.optional("PAYRAILS_CLIENT_CERT"),
            payrails_client_key=e.optional("PAYRAILS_CLIENT_KEY"),
            payrails_ca_file=e.optional("PAYRAILS_CA_FILE"),
            payrails_timeout_seconds=e.number(
                "PAYRAILS_TIMEOUT_SECONDS", d.payrails_timeout_seconds, minimum=0.1
            ),
            payrails_max_retries=e.integer("PAYRAILS_MAX_RETRIES", d.payrails_max_retries),
            payrails_retry_backoff_seconds=e.number(
                "PAYRAILS_RETRY_BACKOFF_SECONDS", d.payrails_retry_backoff_seconds, minimum=0.001
            ),
            payrails_retry_after_max_seconds=e.number(
                "PAYRAILS_RETRY_AFTER_MAX_SECONDS", d.payrails_retry_after_max_seconds
            ),
            payrails_long_poll_seconds=e.number(
                "PAYRAILS_LONG_POLL_SECONDS", d.payrails_long_poll_seconds, minimum=0.1
            ),
            payrails_token_refresh_margin_seconds=e.number(
                "PAYRAILS_TOKEN_REFRESH_MARGIN_SECONDS", d.payrails_token_refresh_margin_seconds
            ),
            webhook_host=e.text("WEBHOOK_HOST", d.webhook_host),
            webhook_port=e.integer("WEBHOOK_PORT", d.webhook_port),
            webhook_max_body_bytes=e.integer(
                "WEBHOOK_MAX_BODY_BYTES", d.webhook_max_body_bytes, minimum=1
            ),
            webhook_publisher=(
                "aio-pika"
                if e.choice("WEBHOOK_PUBLISHER", d.webhook_publisher, WEBHOOK_PUBLISHERS)
                == "aio-pika"
                else "custom"
            ),
            ingress_shutdown_grace_seconds=e.number(
                "INGRESS_SHUTDOWN_GRACE_SECONDS", d.ingress_shutdown_grace_seconds
            ),
            checkout_host=e.text("CHECKOUT_HOST", d.checkout_host),
            checkout_port=e.integer("CHECKOUT_PORT", d.checkout_port),
            public_base_url=e.text("PUBLIC_BASE_URL", d.public_base_url).rstrip("/"),
            checkout_poll_timeout_seconds=e.number(
                "CHECKOUT_POLL_TIMEOUT_SECONDS", d.checkout_poll_timeout_seconds, minimum=0.1
            ),
            return_poll_timeout_seconds=e.number(
                "RETURN_POLL_TIMEOUT_SECONDS", d.return_poll_timeout_seconds, minimum=0.1
            ),
            merchant_api_keys=parse_api_keys(e.text("MERCHANT_API_KEYS", SANDBOX_MERCHANT_API_KEY)),
            checkout_session_ttl_seconds=e.number(
                "CHECKOUT_SESSION_TTL_SECONDS", d.checkout_session_ttl_seconds, minimum=60.0
            ),
            checkout_rate_limit_per_session=e.integer(
                "CHECKOUT_RATE_LIMIT_PER_SESSION", d.checkout_rate_limit_per_session, minimum=1
            ),
            checkout_rate_limit_per_address=e.integer(
                "CHECKOUT_RATE_LIMIT_PER_ADDRESS", d.checkout_rate_limit_per_address, minimum=1
            ),
            checkout_long_polls_per_session=e.integer(
                "CHECKOUT_LONG_POLLS_PER_SESSION", d.checkout_long_polls_per_session, minimum=1
            ),
            checkout_long_polls_total=e.integer(
                "CHECKOUT_LONG_POLLS_TOTAL", d.checkout_long_polls_total, minimum=1
            ),
            http_header_timeout_seconds=e.number(
                "HTTP_HEADER_TIMEOUT_SECONDS", d.http_header_timeout_seconds, minimum=0.1
            ),
            http_body_timeout_seconds=e.number(
                "HTTP_BODY_TIMEOUT_SECONDS", d.http_body_timeout_seconds, minimum=0.1
            ),
            http_keepalive_timeout_seconds=e.number(
                "HTTP_KEEPALIVE_TIMEOUT_SECONDS", d.http_keepalive_timeout_seconds, minimum=0.1
            ),
            admin_host=e.text("ADMIN_HOST", d.admin_host),
            webhook_admin_port=e.integer("WEBHOOK_ADMIN_PORT", d.webhook_admin_port),
            checkout_admin_port=e.integer("CHECKOUT_ADMIN_PORT", d.checkout_admin_port),
            worker_metrics_port=e.integer("WORKER_METRICS_PORT", d.worker_metrics_port),
            worker_prefetch=e.integer("WORKER_PREFETCH", d.worker_prefetch, minimum=1),
            worker_retry_delays_seconds=e.numbers(
                "WORKER_RETRY_DELAYS_SECONDS", d.worker_retry_delays_seconds, positive=True
            ),
            worker_shutdown_grace_seconds=e.number(
                "WORKER_SHUTDOWN_GRACE_SECONDS", d.worker_shutdown_grace_seconds
            ),
            worker_event_batch_size=e.integer(
                "WORKER_EVENT_BATCH_SIZE", d.worker_event_batch_size, minimum=1
            ),
            worker_event_batches=e.integer(
                "WORKER_EVENT_BATCHES", d.worker_event_batches, minimum=1
            ),
            outbox_batch_size=e.integer("OUTBOX_BATCH_SIZE", d.outbox_batch_size, minimum=1),
            outbox_poll_seconds=e.number(
                "OUTBOX_POLL_SECONDS", d.outbox_poll_seconds, minimum=0.01
            ),
            sweeper_interval_seconds=e.number(
                "SWEEPER_INTERVAL_SECONDS", d.sweeper_interval_seconds, minimum=0.1
            ),
            sweeper_stuck_after_seconds=e.number(
                "SWEEPER_STUCK_AFTER_SECONDS", d.sweeper_stuck_after_seconds, minimum=1.0
            ),
            sweeper_batch_size=e.integer("SWEEPER_BATCH_SIZE", d.sweeper_batch_size, minimum=1),
            pre_authorize_hook=e.text("PRE_AUTHORIZE_HOOK", d.pre_authorize_hook),
        )


def is_loopback_http(url: str) -> bool:
    """True for a plain-http URL on a loopback host (scheme and host in any case)."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname  # lower-cased, brackets of an IPv6 literal removed
    except ValueError:
        return False
    if parts.scheme.lower() != "http" or not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_sandbox_url(url: str) -> bool:
    """Only a plain-http loopback URL is the local sandbox.

    Anything else (https, a public or private address, a host name other than ``localhost``)
    is a real Payrails.
    """
    return is_loopback_http(url)


def _secret_values(name: str, raw: str) -> list[bytes]:
    """The key bytes a secret variable holds (each key of a comma-separated list)."""
    if name == "PAYRAILS_WEBHOOK_SECRETS":
        return [key.material for key in parse_webhook_keys(raw)]
    if name == "MERCHANT_API_KEYS":
        return [key.reveal().encode() for key in parse_api_keys(raw)]
    return [raw.encode()]


def _real_secret_problem(name: str, raw: str) -> str | None:
    """Why ``raw`` may not serve as ``name`` against a real Payrails, or None if it may."""
    if not raw:
        return f"{name} must be set explicitly"
    values = _secret_values(name, raw)
    if SANDBOX_DEFAULTS[name].encode() in values:
        return f"{name} holds the sandbox's public default value"
    if name != "PAYRAILS_CLIENT_SECRET" and any(len(v) < MIN_REAL_SECRET_BYTES for v in values):
        return f"every key in {name} must be at least {MIN_REAL_SECRET_BYTES} bytes"
    return None


def _require_real_secrets(base_url: str, env: Mapping[str, str], requires: Collection[str]) -> None:
    """Against a real Payrails, refuse missing secrets, the sandbox defaults and short keys.

    Only the ``requires`` secrets are checked: a secret the process never uses keeps its sandbox
    default, which nothing in that process reads.
    """
    if is_sandbox_url(base_url):
        return
    problems = [
        problem
        for name in REAL_PAYRAILS_SECRETS
        if name in requires
        and (problem := _real_secret_problem(name, env.get(name, "").strip())) is not None
    ]
    if problems:
        raise ConfigError(
            f"PAYRAILS_BASE_URL {base_url} is a real Payrails (only a plain-http loopback URL is "
            f"the sandbox), so {'; '.join(problems)} (the sandbox defaults are public: anyone "
            "could use them)"
        )
