"""Rate limits per session and address, and the bound on concurrent long-polls."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Handler
from hypothesis import given
from hypothesis import strategies as st

from ingress.checkout.limits import (
    LongPollGate,
    LongPollsExhausted,
    RateLimited,
    RateLimiter,
    Throttled,
    TooManyLongPolls,
    address_key,
    retry_after_seconds,
)
from ingress.checkout.service import CheckoutError
from tests.waiting import sample

Client = TestClient[web.Request, web.Application]


class FakeClock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limiter(per_minute: int, *, max_keys: int = 1_000) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter(per_minute, scope="session", max_keys=max_keys, clock=clock), clock


# --- Retry-After ---------------------------------------------------------------------------------


@given(st.floats(min_value=0.0, max_value=1e6))
def test_retry_after_is_whole_seconds_at_least_one_never_short(wait: float) -> None:
    seconds = retry_after_seconds(wait)
    assert seconds >= 1
    assert seconds >= wait
    assert seconds - 1 < max(wait, 1.0)


# --- the rate limiter ----------------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=2_000))
def test_a_burst_of_the_whole_minute_s_allowance_is_allowed_and_no_more(per_minute: int) -> None:
    rates, _ = limiter(per_minute)
    assert [rates.acquire("s") for _ in range(per_minute)] == [0.0] * per_minute
    assert rates.acquire("s") > 0.0


def test_the_wait_is_until_the_next_request_is_allowed() -> None:
    rates, clock = limiter(30)  # one request every 2 s once the burst is spent
    for _ in range(30):
        rates.acquire("s")
    assert rates.acquire("s") == pytest.approx(2.0)
    clock.advance(0.5)
    assert rates.acquire("s") == pytest.approx(1.5)


def test_a_refused_request_is_not_counted() -> None:
    rates, clock = limiter(1)
    rates.acquire("s")
    for _ in range(5):
        wait = rates.acquire("s")
    clock.advance(wait)
    assert rates.acquire("s") == 0.0


@given(st.integers(min_value=1, max_value=600), st.integers(min_value=1, max_value=50))
def test_requests_at_the_configured_rate_are_always_allowed(per_minute: int, count: int) -> None:
    rates, clock = limiter(per_minute)
    for _ in range(per_minute):
        rates.acquire("s")
    for _ in range(count):
        clock.advance(60.0 / per_minute)
        assert rates.acquire("s") == 0.0


def test_keys_are_limited_independently() -> None:
    rates, _ = limiter(1)
    rates.acquire("a")
    assert rates.acquire("a") > 0.0
    assert rates.acquire("b") == 0.0


def test_a_key_idle_for_a_minute_is_forgotten() -> None:
    rates, clock = limiter(10)
    rates.acquire("a")
    clock.advance(60.0)
    rates.acquire("b")
    assert len(rates) == 1


def test_a_flood_of_distinct_keys_keeps_only_max_keys() -> None:
    rates, _ = limiter(1, max_keys=3)
    before = sample("recon_checkout_rate_limit_evictions_total", scope="session")
    for n in range(10):
        rates.acquire(f"key-{n}")
    assert len(rates) == 3
    assert sample("recon_checkout_rate_limit_evictions_total", scope="session") - before == 7


def test_the_least_recently_seen_key_is_evicted_first() -> None:
    rates, _ = limiter(1, max_keys=2)
    rates.acquire("a")
    rates.acquire("b")
    rates.acquire("a")  # refused, but seen
    rates.acquire("c")
    assert rates.acquire("a") > 0.0
    assert rates.acquire("b") == 0.0  # forgotten, so allowed afresh


def test_check_raises_rate_limited_with_a_retry_after_header() -> None:
    rates, clock = limiter(30)
    for _ in range(30):
        rates.check("s")
    clock.advance(0.5)  # 1.5 s to wait
    with pytest.raises(RateLimited) as refused:
        rates.check("s")
    exc = refused.value
    assert isinstance(exc, CheckoutError)
    assert (exc.status, exc.code, exc.scope) == (429, "rate_limited", "session")
    assert exc.retry_after == 2
    assert exc.headers == {"Retry-After": "2"}


def test_each_refusal_is_counted_by_scope() -> None:
    clock = FakeClock()
    rates = RateLimiter(1, scope="address", clock=clock)
    before = sample("recon_checkout_rate_limited_total", scope="address")
    rates.check("198.51.100.7")
    for _ in range(3):
        with pytest.raises(RateLimited):
            rates.check("198.51.100.7")
    assert sample("recon_checkout_rate_limited_total", scope="address") - before == 3


@pytest.mark.parametrize(("per_minute", "max_keys"), [(0, 10), (10, 0)])
def test_a_limiter_needs_a_positive_rate_and_key_bound(per_minute: int, max_keys: int) -> None:
    with pytest.raises(ValueError):
        RateLimiter(per_minute, scope="session", max_keys=max_keys)


# --- address keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remote", "key"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::ffff", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        (None, "unknown"),
        ("", "unknown"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_an_address_key_is_the_ipv4_address_or_the_ipv6_slash_64(
    remote: str | None, key: str
) -> None:
    assert address_key(remote) == key


@given(st.ip_addresses(v=6), st.integers(min_value=0, max_value=2**64 - 1))
def test_every_address_of_an_ipv6_slash_64_shares_a_key(
    address: ipaddress.IPv6Address, host: int
) -> None:
    if address.ipv4_mapped is not None:
        return
    sibling = ipaddress.IPv6Address((int(address) >> 64 << 64) | host)
    assert address_key(str(sibling)) == address_key(str(address))


# --- the long-poll gate --------------------------------------------------------------------------


async def test_a_session_may_hold_its_bound_of_long_polls() -> None:
    gate = LongPollGate(per_key=2, total=10)
    async with gate.hold("s"), gate.hold("s"):
        assert gate.held_by("s") == 2
        assert gate.in_flight == 2


async def test_one_more_long_poll_for_the_session_is_refused_at_once_with_429() -> None:
    gate = LongPollGate(per_key=1, total=10, retry_after=3)
    async with gate.hold("s"):
        with pytest.raises(TooManyLongPolls) as refused:
            async with gate.hold("s"):
                pytest.fail("a second long-poll ran")
        assert gate.in_flight == 1
    exc = refused.value
    assert (exc.status, exc.code, exc.scope) == (429, "too_many_long_polls", "session")
    assert exc.headers == {"Retry-After": "3"}


async def test_another_session_is_not_held_back_by_a_full_session() -> None:
    gate = LongPollGate(per_key=1, total=10)
    async with gate.hold("a"), gate.hold("b"):
        assert gate.in_flight == 2


async def test_beyond_the_total_bound_a_long_poll_is_refused_with_503() -> None:
    gate = LongPollGate(per_key=1, total=2)
    async with gate.hold("a"), gate.hold("b"):
        with pytest.raises(LongPollsExhausted) as refused:
            async with gate.hold("c"):
                pytest.fail("a third long-poll ran")
    exc = refused.value
    assert isinstance(exc, Throttled)
    assert (exc.status, exc.code, exc.scope) == (503, "overloaded", "total")
    assert exc.headers == {"Retry-After": "1"}


async def test_the_slot_is_released_when_the_long_poll_fails() -> None:
    gate = LongPollGate(per_key=1, total=1)
    with pytest.raises(RuntimeError):
        async with gate.hold("s"):
            raise RuntimeError("poll failed")
    assert (gate.in_flight, gate.held_by("s")) == (0, 0)
    async with gate.hold("s"):
        pass


async def test_the_slot_is_released_when_the_long_poll_is_cancelled() -> None:
    gate = LongPollGate(per_key=1, total=1)
    entered = asyncio.Event()

    async def poll() -> None:
        async with gate.hold("s"):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(poll())
    await entered.wait()
    assert gate.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (gate.in_flight, gate.held_by("s")) == (0, 0)


async def test_the_in_flight_gauge_follows_the_held_slots() -> None:
    gate = LongPollGate(per_key=2, total=2)
    before = sample("recon_checkout_long_polls_in_flight")
    async with gate.hold("s"), gate.hold("s"):
        assert sample("recon_checkout_long_polls_in_flight") - before == 2
    assert sample("recon_checkout_long_polls_in_flight") == before


async def test_refused_long_polls_are_counted_by_scope() -> None:
    gate = LongPollGate(per_key=1, total=1)
    session_before = sample("recon_checkout_long_polls_refused_total", scope="session")
    total_before = sample("recon_checkout_long_polls_refused_total", scope="total")
    async with gate.hold("a"):
        with pytest.raises(TooManyLongPolls):
            async with gate.hold("a"):
                pass
        with pytest.raises(LongPollsExhausted):
            async with gate.hold("b"):
                pass
    assert sample("recon_checkout_long_polls_refused_total", scope="session") - session_before == 1
    assert sample("recon_checkout_long_polls_refused_total", scope="total") - total_before == 1


@pytest.mark.parametrize(("per_key", "total", "retry_after"), [(0, 1, 1), (1, 0, 1), (1, 1, 0)])
def test_a_gate_needs_positive_bounds(per_key: int, total: int, retry_after: int) -> None:
    with pytest.raises(ValueError):
        LongPollGate(per_key, total, retry_after=retry_after)


# --- on a real socket ----------------------------------------------------------------------------


@web.middleware
async def answer_checkout_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What the checkout's middleware does with a refusal: its status, code and headers."""
    try:
        return await handler(request)
    except CheckoutError as exc:
        body = {"error": exc.code, "message": exc.message}
        return web.json_response(body, status=exc.status, headers=exc.headers)


class LimitedApp:
    """POST /limited under a one-per-minute limit; GET /poll holds a long-poll until released."""

    def __init__(self) -> None:
        self.rates = RateLimiter(1, scope="session", clock=FakeClock())
        self.gate = LongPollGate(per_key=1, total=2, retry_after=5)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.app = web.Application(middlewares=[answer_checkout_errors])
        self.app.router.add_post("/limited", self.limited)
        self.app.router.add_get("/poll", self.poll)

    async def limited(self, request: web.Request) -> web.Response:
        self.rates.check(request.headers["X-Checkout-Session"])
        return web.json_response({"status": "ok"})

    async def poll(self, request: web.Request) -> web.Response:
        async with self.gate.hold(request.headers["X-Checkout-Session"]):
            self.entered.set()
            await self.release.wait()
        return web.json_response({"status": "done"})


@pytest.fixture
async def served() -> AsyncIterator[tuple[LimitedApp, Client]]:
    limited = LimitedApp()
    async with TestClient(TestServer(limited.app, host="127.0.0.1")) as client:
        yield limited, client
        limited.release.set()


async def test_a_rate_limited_request_is_answered_429_with_retry_after(
    served: tuple[LimitedApp, Client],
) -> None:
    _, client = served
    session = {"X-Checkout-Session": "token-1"}
    assert (await client.post("/limited", headers=session)).status == 200
    response = await client.post("/limited", headers=session)
    assert response.status == 429
    assert response.headers["Retry-After"] == "60"
    assert (await response.json())["error"] == "rate_limited"


async def test_a_second_long_poll_of_a_session_is_answered_429_with_retry_after(
    served: tuple[LimitedApp, Client],
) -> None:
    limited, client = served
    session = {"X-Checkout-Session": "token-1"}
    first = asyncio.create_task(client.get("/poll", headers=session))
    await limited.entered.wait()
    response = await client.get("/poll", headers=session)
    assert response.status == 429
    assert response.headers["Retry-After"] == "5"
    assert (await response.json())["error"] == "too_many_long_polls"
    limited.release.set()
    assert (await first).status == 200


async def test_a_long_poll_beyond_the_total_is_answered_503_with_retry_after(
    served: tuple[LimitedApp, Client],
) -> None:
    limited, client = served
    polls = []
    for token in ("token-1", "token-2"):
        limited.entered.clear()
        polls.append(
            asyncio.create_task(client.get("/poll", headers={"X-Checkout-Session": token}))
        )
        await limited.entered.wait()
    response = await client.get("/poll", headers={"X-Checkout-Session": "token-3"})
    assert response.status == 503
    assert response.headers["Retry-After"] == "5"
    assert (await response.json())["error"] == "overloaded"
    limited.release.set()
    assert [(await poll).status for poll in polls] == [200, 200]
