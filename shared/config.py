"""Typed settings, one class per process, read once from the environment and validated at start-up.

Each process declares only what it reads: small building blocks (logging, the database, the
broker, Payrails, the HTTP servers, ...) combine into ``WebhookIngressSettings``,
``CheckoutSettings``, ``WorkerSettings`` (the ``recon`` CLI's too) and ``MigrationSettings``.
A variable that several processes read is declared once, in a block they share. A field's
environment variable is its name in upper case unless its ``validation_alias`` says otherwise.

Nothing else in the service reads ``os.environ``: entrypoints call
``XSettings.from_env(os.environ)`` and pass the result down; tests build settings from plain
dicts. Constructing a class directly (``WorkerSettings(worker_prefetch=1)``) never reads the
environment.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AliasGenerator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from shared.amqp_url import check_amqp_url
from shared.errors import ConfigError
from shared.operation_states import CaptureMode


class Secret(SecretStr):
    """A string whose repr never shows its value; ``reveal()`` where the value is used."""

    def reveal(self) -> str:
        return self.get_secret_value()


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


def parse_numbers(raw: str, *, positive: bool = False) -> tuple[float, ...]:
    """Comma-separated numbers, none negative; ``positive``: at least one, each above zero."""
    try:
        values = tuple(float(v) for v in raw.split(",") if v.strip())
    except ValueError as exc:
        raise ValueError("must be comma-separated numbers") from exc
    if positive and (not values or any(v <= 0 for v in values)):
        raise ValueError("needs at least one number, each above zero")
    if any(v < 0 for v in values):
        raise ValueError("must not hold negative numbers")
    return values


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


# A publish held longer than this would cost latency for no further batching gain.
MAX_PUBLISH_BATCH_WINDOW_SECONDS = 0.1
# Only ever set explicitly: without them a real Payrails deployment would run on sandbox keys.
# A process must set those of them its settings class declares (see ``real_secrets``).
REAL_PAYRAILS_SECRETS = ("PAYRAILS_CLIENT_SECRET", "PAYRAILS_WEBHOOK_SECRETS", "MERCHANT_API_KEYS")
# The sandbox's public defaults: refused against a real Payrails, even when set explicitly.
SANDBOX_CLIENT_SECRET = "sandbox-secret"  # noqa: S105 (public on purpose)
SANDBOX_WEBHOOK_SECRET = "sandbox-webhook-secret"  # noqa: S105 (public on purpose)
SANDBOX_MERCHANT_API_KEY = "sandbox-merchant-key"
SANDBOX_DEFAULTS: dict[str, bytes] = {
    "PAYRAILS_CLIENT_SECRET": SANDBOX_CLIENT_SECRET.encode(),
    "PAYRAILS_WEBHOOK_SECRETS": SANDBOX_WEBHOOK_SECRET.encode(),
    "MERCHANT_API_KEYS": SANDBOX_MERCHANT_API_KEY.encode(),
}
# Shortest secret accepted against a real Payrails (HMAC keys should be as long as the hash).
MIN_REAL_SECRET_BYTES = 32


# pydantic's wording of the common problems, shortened; anything else keeps pydantic's message.
_REASONS = {
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "bool_parsing": "must be a boolean",
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "literal_error": "must be {expected}",
}


class _GivenEnvironment(EnvSettingsSource):
    """pydantic-settings' environment source over an explicit mapping instead of os.environ.

    Values are stripped; an empty one counts as unset (the field keeps its default), except
    for the variables a class lists in ``empty_is_a_value``. ``_load_env_vars`` is where the
    source reads os.environ (pyproject keeps pydantic-settings below 3 for that).
    """

    def __init__(self, settings_cls: type[EnvSettings], env: Mapping[str, str]) -> None:
        keep = settings_cls.empty_is_a_value
        stripped = {name: value.strip() for name, value in env.items()}
        self._given = {k: v for k, v in stripped.items() if v or k in keep}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._given


class EnvSettings(BaseSettings):
    """Base of every settings class: frozen, and read only from the mapping ``from_env`` gets."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        case_sensitive=True,
        alias_generator=AliasGenerator(validation_alias=str.upper),
        validate_by_name=True,
        validate_by_alias=True,
        # A ValidationError printed anywhere never shows a value: it may be a secret.
        hide_input_in_errors=True,
    )
    # Variables whose empty value means "empty", not "unset".
    empty_is_a_value: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the constructor's arguments: no os.environ, .env or secrets directory."""
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        """Read and validate the class's variables from ``env``; ConfigError names each bad one."""
        try:
            return cls(**_GivenEnvironment(cls, env)())
        except ValidationError as exc:
            # Not chained: a traceback must not carry the values (secrets among them).
            raise ConfigError(cls._describe(exc)) from None

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Field name -> the environment variable it is read from."""
        return {name: str(info.validation_alias) for name, info in cls.model_fields.items()}

    @classmethod
    def real_secrets(cls) -> tuple[str, ...]:
        """The REAL_PAYRAILS_SECRETS this class reads: against a real Payrails each must be set."""
        declared = set(cls.variables().values())
        return tuple(name for name in REAL_PAYRAILS_SECRETS if name in declared)

    @classmethod
    def _describe(cls, exc: ValidationError) -> str:
        """One line per problem, each naming its variable, none showing a value."""
        variables = cls.variables()
        by_key = {**variables, **{v: v for v in variables.values()}}
        problems: list[str] = []
        for error in exc.errors(include_url=False, include_input=False):
            name = by_key.get(str(error["loc"][0])) if error["loc"] else None
            context = error.get("ctx", {})
            template = _REASONS.get(error["type"])
            reason = template.format(**context) if template else error["msg"]
            if error["type"] == "value_error":
                reason = str(context.get("error", reason))
            if name is not None and not reason.startswith(name):
                reason = f"{name} {reason}" if reason[:1].islower() else f"{name}: {reason}"
            problems.append(reason)
        return "; ".join(problems)


def _from_text(parse: Callable[[str], object]) -> BeforeValidator:
    """Parse a variable's text with ``parse``; a value that is not text (a test's) passes as is."""

    def validate(value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            return parse(value)
        except ConfigError as exc:  # pydantic reports ValueErrors, naming the variable
            raise ValueError(str(exc)) from None

    return BeforeValidator(validate)


PositiveSeconds = Annotated[float, Field(ge=0.1)]
Count = Annotated[int, Field(ge=1)]
Port = Annotated[int, Field(ge=0)]


# --- building blocks: each declares the variables of one concern -------------------------------
class LoggingSettings(EnvSettings):
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    @field_validator("log_level", mode="before")
    @classmethod
    def upper_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def lower_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class DatabaseUrlSettings(EnvSettings):
    # repr=False: a production URL carries the database password.
    database_url: str = Field(
        default="postgresql+psycopg://postgres@127.0.0.1:5432/payrails", repr=False
    )

    @field_validator("database_url")
    @classmethod
    def psycopg_driver(cls, value: str) -> str:
        if not value.startswith("postgresql+psycopg://"):
            raise ValueError("DATABASE_URL must start with postgresql+psycopg://")
        return value


class DatabaseSettings(DatabaseUrlSettings):
    database_pool_size: Count = 10
    database_pool_timeout_seconds: PositiveSeconds = 10.0


class BrokerSettings(EnvSettings):
    """The connection to RabbitMQ and how long a publish may wait for its confirm."""

    amqp_url: Secret = Secret("amqp://guest:guest@127.0.0.1:5672/")
    amqp_publish_timeout_seconds: Annotated[float, Field(ge=0.01)] = 5.0
    amqp_reconnect_interval_seconds: Annotated[float, Field(ge=0.01)] = 2.0
    # Reconnect pauses grow from AMQP_RECONNECT_INTERVAL_SECONDS up to this.
    amqp_reconnect_max_seconds: Annotated[float, Field(ge=0.01)] = 30.0

    @field_validator("amqp_url")
    @classmethod
    def understood_by_every_process(cls, value: Secret) -> Secret:
        """Refuse at start-up what one process would read differently (``shared.amqp_url``)."""
        try:
            check_amqp_url(value.reveal())
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value


class TopologySettings(EnvSettings):
    """The names and arguments of the exchanges and queues that ``declare_topology`` declares."""

    amqp_name_prefix: str = ""
    amqp_delivery_limit: Count = 50
    # One delay queue per tier: every process that declares the topology reads them.
    worker_retry_delays_seconds: Annotated[
        tuple[float, ...], NoDecode, _from_text(lambda raw: parse_numbers(raw, positive=True))
    ] = (1.0, 5.0, 30.0, 120.0, 600.0)


class PublisherSettings(BrokerSettings, TopologySettings):
    """The ingress apps' publish-only confirm connection (``ingress.broker``)."""

    # How long a publish may wait to leave with others while earlier ones await their confirm.
    amqp_publish_batch_window_seconds: Annotated[
        float, Field(ge=0, le=MAX_PUBLISH_BATCH_WINDOW_SECONDS)
    ] = 0.001


class HttpServerSettings(EnvSettings):
    """Deadlines of every HTTP server, and where the admin servers listen."""

    # Slow or idle clients are cut off after these.
    http_header_timeout_seconds: PositiveSeconds = 10.0
    http_body_timeout_seconds: PositiveSeconds = 10.0
    http_keepalive_timeout_seconds: PositiveSeconds = 15.0
    # /metrics and /readyz live on a separate admin port per process, loopback by default.
    admin_host: str = "127.0.0.1"


class PayrailsCredentials(EnvSettings):
    """Who we are at Payrails; the sandbox reads the same variables, to play the other side."""

    payrails_client_id: str = "sandbox-client"
    payrails_client_secret: Secret = Secret(SANDBOX_CLIENT_SECRET)
    payrails_workspace_id: str = "sandbox-workspace"


class WebhookSecrets(EnvSettings):
    """The keys webhook signatures are made with (the sandbox signs with the first)."""

    payrails_webhook_keys: Annotated[
        tuple[WebhookKey, ...], NoDecode, _from_text(parse_webhook_keys)
    ] = Field(
        default=(WebhookKey(SANDBOX_WEBHOOK_SECRET.encode()),),
        validation_alias="PAYRAILS_WEBHOOK_SECRETS",
    )


class PayrailsTargetSettings(EnvSettings):
    """Which Payrails this process talks to, or is called by; a real one demands real secrets."""

    payrails_base_url: str = "http://127.0.0.1:8090"

    @field_validator("payrails_base_url")
    @classmethod
    def no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def real_payrails_needs_real_secrets(self) -> Self:
        """Against a real Payrails, refuse missing secrets, the sandbox defaults and short keys.

        Only the secrets this class declares are checked: one the process never reads keeps its
        sandbox default elsewhere, and nothing here uses it.
        """
        if is_sandbox_url(self.payrails_base_url):
            return self
        fields = {variable: name for name, variable in type(self).variables().items()}
        problems = [
            problem
            for variable in self.real_secrets()
            if (problem := self._secret_problem(variable, fields[variable])) is not None
        ]
        if problems:
            raise ValueError(
                f"PAYRAILS_BASE_URL {self.payrails_base_url} is a real Payrails (only a plain-http "
                f"loopback URL is the sandbox), so {'; '.join(problems)} (the sandbox defaults are "
                "public: anyone could use them)"
            )
        return self

    def _secret_problem(self, variable: str, name: str) -> str | None:
        """Why the value of ``variable`` may not be used against a real Payrails, or None."""
        if name not in self.model_fields_set:
            return f"{variable} must be set explicitly"
        value: object = getattr(self, name)
        items = value if isinstance(value, tuple) else (value,)
        keys = [k.material if isinstance(k, WebhookKey) else k.reveal().encode() for k in items]
        if SANDBOX_DEFAULTS[variable] in keys:
            return f"{variable} holds the sandbox's public default value"
        if variable != "PAYRAILS_CLIENT_SECRET" and any(
            len(k) < MIN_REAL_SECRET_BYTES for k in keys
        ):
            return f"every key in {variable} must be at least {MIN_REAL_SECRET_BYTES} bytes"
        return None


class PayrailsClientSettings(PayrailsTargetSettings, PayrailsCredentials):
    """What ``shared.payrails`` needs to call Payrails."""

    payrails_workflow_code: str = "payment-acceptance"
    payrails_client_cert: str | None = None
    payrails_client_key: str | None = None
    # CA bundle that verifies Payrails' server certificate; None: the system's trust store.
    payrails_ca_file: str | None = None
    payrails_timeout_seconds: PositiveSeconds = 15.0
    payrails_max_retries: Annotated[int, Field(ge=0)] = 3
    payrails_retry_backoff_seconds: Annotated[float, Field(ge=0.001)] = 0.25
    payrails_retry_after_max_seconds: Annotated[float, Field(ge=0)] = 30.0
    payrails_long_poll_seconds: PositiveSeconds = 30.0
    payrails_token_refresh_margin_seconds: Annotated[float, Field(ge=0)] = 60.0


class CheckoutLinkSettings(EnvSettings):
    """Checkout sessions and the links to them: the checkout makes them, the worker too."""

    public_base_url: str = "http://127.0.0.1:8000"
    checkout_session_ttl_seconds: Annotated[float, Field(ge=60.0)] = 3600.0

    @field_validator("public_base_url")
    @classmethod
    def no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")


class IngressSettings(
    LoggingSettings, HttpServerSettings, PublisherSettings, PayrailsTargetSettings
):
    """What both ingress apps read (``python -m ingress webhooks|checkout``)."""

    ingress_shutdown_grace_seconds: Annotated[float, Field(ge=0)] = 10.0


# --- the processes ---------------------------------------------------------------------------
class WebhookIngressSettings(IngressSettings, WebhookSecrets):
    """``python -m ingress webhooks``: verifies signatures and publishes; never calls Payrails."""

    webhook_host: str = "0.0.0.0"
    webhook_port: Port = 8080
    webhook_admin_port: Port = 9080
    webhook_max_body_bytes: Count = 1024 * 1024
    # Which publisher the webhook ingress uses (see ingress/publishing.py and the README).
    webhook_publisher: Literal["custom", "aio-pika"] = "custom"


class CheckoutSettings(
    IngressSettings, DatabaseSettings, PayrailsClientSettings, CheckoutLinkSettings
):
    """``python -m ingress checkout``: the merchant and shopper APIs; calls Payrails."""

    checkout_host: str = "0.0.0.0"
    checkout_port: Port = 8000
    checkout_admin_port: Port = 9000
    # Origin the shopper's browser loads the Secure Fields SDK from; None = payrails_base_url.
    payrails_sdk_origin: str | None = None
    checkout_poll_timeout_seconds: PositiveSeconds = 25.0
    return_poll_timeout_seconds: PositiveSeconds = 25.0
    # Merchant API keys (several during a rotation); the default is the sandbox's and public.
    merchant_api_keys: Annotated[tuple[Secret, ...], NoDecode, _from_text(parse_api_keys)] = (
        Secret(SANDBOX_MERCHANT_API_KEY),
    )
    # place-order and payments/init requests per minute, per checkout session and per address.
    checkout_rate_limit_per_session: Count = 30
    checkout_rate_limit_per_address: Count = 300
    # Concurrent long-polls (place-order, payment-return) per session and in all.
    checkout_long_polls_per_session: Count = 2
    checkout_long_polls_total: Count = 256
    # How long after its creation a declined order may still be paid with another card.
    payment_retry_window_seconds: PositiveSeconds = 86400.0
    # Who captures new orders' authorizations: Payrails at once (its default) or the merchant.
    payrails_capture_mode: CaptureMode = CaptureMode.INSTANT

    @field_validator("payrails_capture_mode", mode="before")
    @classmethod
    def capture_mode_lower_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("payrails_sdk_origin")
    @classmethod
    def origin_or_none(cls, value: str | None) -> str | None:
        return (value or "").rstrip("/") or None


class WorkerSettings(
    LoggingSettings,
    HttpServerSettings,
    BrokerSettings,
    TopologySettings,
    DatabaseSettings,
    PayrailsClientSettings,
    CheckoutLinkSettings,
):
    """``python -m worker`` and the ``recon`` CLI beside it: consumers, outbox, sweeper."""

    worker_metrics_port: Port = 9100
    worker_prefetch: Count = 64
    worker_shutdown_grace_seconds: Annotated[float, Field(ge=0)] = 20.0
    worker_event_batch_size: Count = 50
    worker_event_batches: Count = 4
    outbox_batch_size: Count = 200
    outbox_poll_seconds: Annotated[float, Field(ge=0.01)] = 1.0
    sweeper_interval_seconds: PositiveSeconds = 30.0
    sweeper_stuck_after_seconds: Annotated[float, Field(ge=1.0)] = 300.0
    sweeper_batch_size: Count = 50
    # A capture, cancel or refund in flight this long is re-polled (its webhook may be lost).
    sweeper_operation_stuck_after_seconds: Annotated[float, Field(ge=1.0)] = 300.0
    # A manual-capture authorization not captured this long is flagged (schemes expire them
    # after about seven days).
    authorization_capture_warning_seconds: Annotated[float, Field(ge=60.0)] = 6 * 86400.0
    # ``package.module:ClassName`` of the pre-authorize hook; empty: every order is allowed.
    pre_authorize_hook: str = ""


class MigrationSettings(DatabaseUrlSettings):
    """``alembic upgrade head`` (migrations/env.py): the database URL only."""
