"""Fault knobs: per-endpoint errors, latency, 429s, hangs and lost responses; webhook mischief."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

ALL_ENDPOINTS = "*"


class KnobError(ValueError):
    """A fault knob or runtime setting is not acceptable."""


@dataclass(frozen=True, slots=True)
class EndpointFaults:
    """Faults for one endpoint; each ``*_rate`` is a probability per request."""

    error_rate: float = 0.0  # answer 503 service.unavailable, write not done
    latency_seconds: float = 0.0  # added before handling
    rate_limit_rate: float = 0.0  # answer 429 request.rate-limit with Retry-After
    retry_after_seconds: float = 1.0
    hang_rate: float = 0.0  # hold the request for hang_seconds, then 504, write not done
    hang_seconds: float = 60.0
    drop_response_rate: float = 0.0  # do the write, then close the connection unanswered
    unauthorized_rate: float = 0.0  # answer 401 as if the bearer token (or api key) were refused
    garble_response_rate: float = 0.0  # do the write, then answer its status with a non-JSON body
    times: int | None = None  # affect at most this many requests, then disarm

    @classmethod
    def from_json(cls, data: object) -> EndpointFaults:
        """Parse one endpoint's knobs (snake_case or camelCase); raise KnobError on nonsense."""
        return cls(**_knobs(cls, data, "fault"))


def _knobs(cls: type[Any], data: object, what: str) -> dict[str, Any]:
    """A knob object's values by field name, accepting snake_case or camelCase keys."""
    if not isinstance(data, Mapping):
        raise KnobError(f"{what}s must be an object")
    known = {f.name: f.name for f in fields(cls)} | {_camel(f.name): f.name for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = known.get(str(key))
        if name is None:
            raise KnobError(f"unknown {what} knob {key!r}")
        values[name] = _number(name, value)
    return values


@dataclass(frozen=True, slots=True)
class WebhookFaults:
    """Webhook delivery mischief; each ``*_rate`` is a probability per delivery."""

    duplicate_rate: float = 0.0  # send a second, identical delivery
    delay_rate: float = 0.0  # hold the delivery a while: later events overtake it
    delay_min_seconds: float = 0.0
    delay_max_seconds: float = 2.0
    drop_rate: float = 0.0  # never send it (listed as dropped; resend works)
    hold_rate: float = 0.0  # keep it "held" until POST /_sandbox/deliveries/{id}/release

    @classmethod
    def from_json(cls, data: object) -> WebhookFaults:
        return cls(**_knobs(cls, data, "webhook fault"))


@dataclass(frozen=True, slots=True)
class Faults:
    """Every knob; ``endpoints["*"]`` applies where an endpoint has no entry of its own."""

    webhooks: WebhookFaults = field(default_factory=WebhookFaults)
    endpoints: Mapping[str, EndpointFaults] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: object) -> Faults:
        """Parse ``{"webhooks": {...}, "endpoints": {"authorize": {...}, "*": {...}}}``."""
        if not isinstance(data, Mapping):
            raise KnobError("faults must be an object")
        unknown = set(data) - {"webhooks", "endpoints"}
        if unknown:
            raise KnobError(f"unknown fault sections {sorted(unknown)}")
        return cls(
            webhooks=WebhookFaults.from_json(data.get("webhooks", {})),
            endpoints=cls.endpoints_from_json(data.get("endpoints", {})),
        )

    @staticmethod
    def endpoints_from_json(data: object) -> dict[str, EndpointFaults]:
        if not isinstance(data, Mapping):
            raise KnobError("endpoints must be an object of endpoint name -> knobs")
        return {str(name): EndpointFaults.from_json(knobs) for name, knobs in data.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "webhooks": asdict(self.webhooks),
            "endpoints": {name: asdict(knobs) for name, knobs in self.endpoints.items()},
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do to one request."""

    latency_seconds: float = 0.0
    hang_seconds: float | None = None
    retry_after_seconds: float | None = None
    error: bool = False
    drop_response: bool = False
    unauthorized: bool = False
    garble_response: bool = False


class FaultInjector:
    """Draws per-request decisions from the current knobs; ``times`` counts down per endpoint."""

    def __init__(self, faults: Faults, rng: random.Random) -> None:
        self._rng = rng
        self._remaining: dict[str, int] = {}
        self.faults = faults
        self.replace(faults)

    def replace(self, faults: Faults) -> None:
        self.faults = faults
        self._remaining = {
            name: knobs.times for name, knobs in faults.endpoints.items() if knobs.times is not None
        }

    def chance(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def uniform(self, low: float, high: float) -> float:
        return self._rng.uniform(low, high)

    def decide(self, endpoint: str) -> Decision:
        """This request's faults; Decision() when none apply."""
        name = endpoint if endpoint in self.faults.endpoints else ALL_ENDPOINTS
        knobs = self.faults.endpoints.get(name)
        if knobs is None or self._remaining.get(name, 1) <= 0:
            return Decision()
        decision = Decision(
            latency_seconds=knobs.latency_seconds,
            hang_seconds=knobs.hang_seconds if self.chance(knobs.hang_rate) else None,
            retry_after_seconds=knobs.retry_after_seconds
            if self.chance(knobs.rate_limit_rate)
            else None,
            error=self.chance(knobs.error_rate),
            drop_response=self.chance(knobs.drop_response_rate),
            unauthorized=self.chance(knobs.unauthorized_rate),
            garble_response=self.chance(knobs.garble_response_rate),
        )
        if decision != Decision() and name in self._remaining:
            self._remaining[name] -= 1
        return decision


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _number(name: str, value: object) -> float | int | None:
    if name == "times":
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise KnobError("times must be a non-negative integer or null")
        return value
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise KnobError(f"{name} must be a non-negative number")
    if name.endswith("_rate") and value > 1:
        raise KnobError(f"{name} is a probability between 0 and 1")
    return float(value)
