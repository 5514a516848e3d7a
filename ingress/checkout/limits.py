"""Request rates and concurrent long-polls of the checkout, per key, in bounded memory.

Refusals are :class:`Throttled` errors: a status, a stable code, and ``headers`` carrying
``Retry-After`` in whole seconds (at least 1) for the response.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Literal, NoReturn

from ingress.checkout.service import CheckoutError
from shared import metrics

Clock = Callable[[], float]
"""Seconds on a monotonic scale: ``time.monotonic`` in service, a fake one in tests."""

RateScope = Literal["session", "address"]
LongPollScope = Literal["session", "total"]

DEFAULT_MAX_KEYS = 100_000
_SLACK_SECONDS = 1e-6  # float sums of the interval must not refuse the last request of a burst


def retry_after_seconds(wait: float) -> int:
    """A wait as a ``Retry-After`` value: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(wait))


class Throttled(CheckoutError, status=429, code="rate_limited", title="Too many requests"):
    """A refusal the client may retry after ``retry_after`` seconds, sent as ``headers``."""

    def __init__(self, message: str, *, scope: str, wait_seconds: float) -> None:
        retry_after = retry_after_seconds(wait_seconds)
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.scope = scope
        self.retry_after = retry_after


class RateLimited(Throttled):
    """Too many requests for one session or one client address."""


class TooManyLongPolls(
    Throttled, status=429, code="too_many_long_polls", title="Too many requests in progress"
):
    """This session already has as many long-polls open as it may."""


class LongPollsExhausted(Throttled, status=503, code="overloaded", title="Service busy"):
    """The process holds as many long-polls as it may, across all sessions."""


def address_key(remote: str | None) -> str:
    """The rate-limit key of a client address: an IPv4 address, or an IPv6 address's /64.

    One IPv6 host usually holds a whole /64, so each of its addresses is the same client.
    """
    if not remote:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class RateLimiter:
    """At most ``per_minute`` requests per key in any minute, a burst of all of them allowed.

    A token bucket kept as one number per key (the generic cell rate algorithm): the time its
    bucket is full again. Keys whose bucket is full hold no state and are forgotten; beyond
    ``max_keys`` the least recently seen key is forgotten too, so a flood of distinct keys
    costs bounded memory (and at worst forgets a limited key, counted as an eviction).
    """

    def __init__(
        self,
        per_minute: int,
        *,
        scope: RateScope,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Clock = time.monotonic,
    ) -> None:
        if per_minute < 1 or max_keys < 1:
            raise ValueError("per_minute and max_keys must be at least 1")
        self._interval = 60.0 / per_minute
        self._tolerance = 60.0 - self._interval
        self._scope: RateScope = scope
        self._max_keys = max_keys
        self._clock = clock
        self._full_at: OrderedDict[str, float] = OrderedDict()  # least recently seen first

    def __len__(self) -> int:
        """Keys tracked now."""
        return len(self._full_at)

    def acquire(self, key: str) -> float:
        """Count a request for ``key``: 0.0 if allowed, else the seconds until one is.

        A refused request is not counted, so a client that waits as told gets through.
        """
        now = self._clock()
        full_at = max(self._full_at.get(key, now), now)
        wait = full_at - now - self._tolerance
        if wait > _SLACK_SECONDS:
            self._full_at.move_to_end(key)  # present: only a tracked key can be refused
            return wait
        self._full_at[key] = full_at + self._interval
        self._full_at.move_to_end(key)
        self._forget(now)
        return 0.0

    def check(self, key: str) -> None:
        """Count a request for ``key``, or raise :class:`RateLimited`."""
        wait = self.acquire(key)
        if wait > 0.0:
            metrics.CHECKOUT_RATE_LIMITED.labels(self._scope).inc()
            raise RateLimited(
                f"too many requests for this {self._scope}; retry later",
                scope=self._scope,
                wait_seconds=wait,
            )

    def _forget(self, now: float) -> None:
        """Drop least recently seen keys while they are full again or beyond the bound."""
        while self._full_at:
            key, full_at = next(iter(self._full_at.items()))
            if full_at > now and len(self._full_at) <= self._max_keys:
                return
            del self._full_at[key]
            if full_at > now:
                metrics.CHECKOUT_RATE_LIMIT_EVICTIONS.labels(self._scope).inc()


class LongPollGate:
    """At most ``per_key`` long-polls per key (session) and ``total`` in all, refused at once.

    Memory holds one count per key with a long-poll open, so at most ``total`` entries.
    """

    def __init__(self, per_key: int, total: int, *, retry_after: int = 1) -> None:
        if per_key < 1 or total < 1 or retry_after < 1:
            raise ValueError("per_key, total and retry_after must be at least 1")
        self._per_key = per_key
        self._total = total
        self._retry_after = retry_after
        self._held: dict[str, int] = {}
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Long-polls holding a slot now, across all keys."""
        return self._in_flight

    def held_by(self, key: str) -> int:
        """Long-polls ``key`` holds now."""
        return self._held.get(key, 0)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold a slot for ``key`` while the block runs.

        Raises :class:`TooManyLongPolls` (429) when ``key`` holds ``per_key`` slots, else
        :class:`LongPollsExhausted` (503) when ``total`` are held; nothing waits for a slot.
        """
        held = self.held_by(key)
        if held >= self._per_key:
            self._refuse(TooManyLongPolls, "session", "this session already has long-polls open")
        if self._in_flight >= self._total:
            self._refuse(LongPollsExhausted, "total", "too many requests in progress; retry")
        self._held[key] = held + 1
        self._in_flight += 1
        metrics.CHECKOUT_LONG_POLLS_IN_FLIGHT.inc()
        try:
            yield
        finally:
            self._in_flight -= 1
            metrics.CHECKOUT_LONG_POLLS_IN_FLIGHT.dec()
            remaining = self._held[key] - 1
            if remaining:
                self._held[key] = remaining
            else:
                del self._held[key]

    def _refuse(self, error: type[Throttled], scope: LongPollScope, message: str) -> NoReturn:
        metrics.CHECKOUT_LONG_POLLS_REFUSED.labels(scope).inc()
        raise error(message, scope=scope, wait_seconds=self._retry_after)
