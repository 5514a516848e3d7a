"""The one backoff of every retry loop: growth, cap, jitter bounds, and the interruptible pause."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.backoff import Backoff, pause

starts = st.floats(min_value=0.001, max_value=100.0)
caps = st.floats(min_value=0.001, max_value=1000.0)
factors = st.floats(min_value=1.0, max_value=10.0)
jitters = st.floats(min_value=0.0, max_value=1.0)
attempts = st.integers(min_value=1, max_value=10_000)
seeds = st.integers(min_value=0, max_value=2**32)


@given(starts, caps, factors, attempts)
def test_each_ceiling_is_the_last_one_times_the_factor_until_the_cap(
    start: float, cap: float, factor: float, attempt: int
) -> None:
    backoff = Backoff(start=start, cap=cap, factor=factor)

    expected = min(cap, backoff.ceiling(attempt) * factor)

    assert backoff.ceiling(attempt + 1) == pytest.approx(expected, rel=1e-9)


@given(starts, caps, factors)
def test_the_first_ceiling_is_the_start_unless_the_cap_is_lower(
    start: float, cap: float, factor: float
) -> None:
    assert Backoff(start=start, cap=cap, factor=factor).ceiling(1) == min(start, cap)


@given(starts, caps, factors, attempts)
def test_no_ceiling_exceeds_the_cap(start: float, cap: float, factor: float, attempt: int) -> None:
    assert Backoff(start=start, cap=cap, factor=factor).ceiling(attempt) <= cap


def test_a_huge_attempt_number_is_the_cap_not_an_overflow() -> None:
    assert Backoff(start=0.1, cap=30.0, factor=10.0).ceiling(10**9) == 30.0


@given(starts, caps, factors, jitters, attempts, seeds)
def test_a_delay_lies_between_its_jittered_floor_and_its_ceiling(
    start: float, cap: float, factor: float, jitter: float, attempt: int, seed: int
) -> None:
    backoff = Backoff(start=start, cap=cap, factor=factor, jitter=jitter)
    ceiling = backoff.ceiling(attempt)

    delay = backoff.delay(attempt, random.Random(seed))

    assert ceiling * (1 - jitter) * (1 - 1e-12) <= delay <= ceiling * (1 + 1e-12)


def test_without_jitter_the_delays_are_the_plain_exponential_sequence() -> None:
    delays = Backoff(start=0.25, cap=2.0, jitter=0.0).delays()

    assert list(itertools.islice(delays, 6)) == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


def test_sequences_without_a_given_random_are_jittered_independently() -> None:
    backoff = Backoff(start=1.0, cap=60.0)

    first, second = (list(itertools.islice(backoff.delays(), 8)) for _ in range(2))

    assert first != second


def test_the_same_random_seed_gives_the_same_delays() -> None:
    backoff = Backoff(start=1.0, cap=60.0, jitter=1.0)

    first, second = (list(itertools.islice(backoff.delays(random.Random(7)), 8)) for _ in range(2))

    assert first == second


@pytest.mark.parametrize(
    "arguments",
    [
        {"start": 0.0, "cap": 1.0},
        {"start": 1.0, "cap": -1.0},
        {"start": 1.0, "cap": 2.0, "factor": 0.5},
        {"start": 1.0, "cap": 2.0, "jitter": 1.5},
        {"start": 1.0, "cap": 2.0, "jitter": -0.1},
    ],
)
def test_a_backoff_that_would_not_back_off_is_refused(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**arguments)


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError):
        Backoff(start=1.0, cap=2.0).ceiling(0)


async def test_pause_without_events_sleeps_and_reports_no_event() -> None:
    assert await pause(0.0) is False


async def test_pause_runs_its_time_out_when_no_event_is_set() -> None:
    assert await pause(0.01, asyncio.Event(), asyncio.Event()) is False


async def test_pause_returns_as_soon_as_one_of_its_events_is_set() -> None:
    """An hour-long pause ends when shutdown begins (a hang fails this test by its timeout)."""
    quiet, stop = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().call_soon(stop.set)

    assert await pause(3600.0, quiet, stop) is True


async def test_pause_leaves_no_waiting_task_behind() -> None:
    before = asyncio.all_tasks()
    stop = asyncio.Event()
    stop.set()

    await pause(3600.0, asyncio.Event(), stop)

    assert asyncio.all_tasks() <= before
