"""The token cache: refreshed before expiry, one refresh for many concurrent callers."""

from __future__ import annotations

import asyncio

from shared.payrails.auth import TokenCache, refresh_deadline


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Issuer:
    """Hands out numbered tokens, yielding once so concurrent callers really overlap."""

    def __init__(self, expires_in: float = 600.0) -> None:
        self.issued = 0
        self.expires_in = expires_in

    async def __call__(self) -> tuple[str, float]:
        await asyncio.sleep(0)
        self.issued += 1
        return f"token-{self.issued}", self.expires_in


async def test_concurrent_callers_with_an_expired_token_share_one_refresh() -> None:
    clock, issuer = Clock(), Issuer()
    cache = TokenCache(issuer, margin_seconds=60, clock=clock)
    await cache.get()
    clock.now += 600

    tokens = await asyncio.gather(*(cache.get() for _ in range(50)))

    assert set(tokens) == {"token-2"}
    assert issuer.issued == 2


async def test_token_is_refreshed_before_it_expires() -> None:
    clock, issuer = Clock(), Issuer()
    cache = TokenCache(issuer, margin_seconds=60, clock=clock)
    await cache.get()
    clock.now += 541
    assert await cache.get() == "token-2"


async def test_token_is_kept_while_fresh() -> None:
    clock, issuer = Clock(), Issuer()
    cache = TokenCache(issuer, margin_seconds=60, clock=clock)
    await cache.get()
    clock.now += 500
    assert await cache.get() == "token-1"


async def test_replacing_a_token_someone_already_replaced_fetches_nothing() -> None:
    clock, issuer = Clock(), Issuer()
    cache = TokenCache(issuer, margin_seconds=60, clock=clock)
    stale = await cache.get()
    await cache.replace(stale)

    assert await cache.replace(stale) == "token-2"
    assert issuer.issued == 2


def test_short_lived_tokens_are_refreshed_at_four_fifths_of_their_life() -> None:
    assert refresh_deadline(0.0, 10.0, margin=60.0) == 8.0
    assert refresh_deadline(0.0, 600.0, margin=60.0) == 540.0
