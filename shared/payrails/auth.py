"""The OAuth token cache: one token at a time, refreshed before it expires, single-flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from shared import metrics
from shared.payrails.errors import PayrailsAuthError, PayrailsError

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A bearer token and the monotonic time after which we stop using it."""

    value: str
    refresh_at: float

    def __repr__(self) -> str:
        return f"AccessToken(refresh_at={self.refresh_at:.1f})"


TokenFetcher = Callable[[], Awaitable[tuple[str, float]]]


def refresh_deadline(now: float, expires_in: float, margin: float) -> float:
    """When to refresh: ``margin`` seconds early, but never earlier than 80% of the lifetime."""
    return now + max(expires_in - margin, expires_in * 0.8)


class TokenCache:
    """Hands out the cached token; concurrent callers share one refresh."""

    def __init__(
        self,
        fetch: TokenFetcher,
        *,
        margin_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._margin = margin_seconds
        self._clock = clock
        self._token: AccessToken | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        """A token that is not about to expire; fetches one if needed."""
        token = self._token
        if token is not None and self._clock() < token.refresh_at:
            return token.value
        return await self._refresh(stale=token.value if token else None)

    async def replace(self, stale: str) -> str:
        """After a 401 with ``stale``: fetch a new token unless another caller already did."""
        return await self._refresh(stale=stale)

    async def _refresh(self, *, stale: str | None) -> str:
        async with self._lock:
            current = self._token
            fresh = current is not None and self._clock() < current.refresh_at
            if current is not None and fresh and current.value != stale:
                return current.value
            try:
                value, expires_in = await self._fetch()
            except PayrailsAuthError:
                metrics.PAYRAILS_TOKEN_REFRESHES.labels(outcome="rejected").inc()
                raise
            except PayrailsError:
                metrics.PAYRAILS_TOKEN_REFRESHES.labels(outcome="error").inc()
                raise
            now = self._clock()
            self._token = AccessToken(value, refresh_deadline(now, expires_in, self._margin))
            metrics.PAYRAILS_TOKEN_REFRESHES.labels(outcome="ok").inc()
            log.info("payrails.token.refreshed", expires_in=expires_in)
            return value
