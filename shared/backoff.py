"""Exponential backoff with jitter, and a pause that shutdown cuts short.

Every retry loop of the service (the worker's database and hand-off loops, the outbox relay and
its LISTEN connection, the ingress's broker reconnect, the Payrails client's retries, the
start-up readiness waits) draws its delays from a ``Backoff``. The loops themselves stay
hand-written: each decides differently when to give up (a database probe, a deadline, a retry
limit, a shutdown that requeues), which a generic retry decorator would hide.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays whose ceiling grows from ``start`` by ``factor`` per attempt, up to ``cap``.

    Each delay is drawn uniformly between ``(1 - jitter)`` of its ceiling and the ceiling:
    ``jitter=0`` gives the plain exponential sequence, ``1`` full jitter, the default ``0.5``
    keeps at least half the ceiling. Jitter spreads the retries of many processes that failed
    together, so they do not all come back at the same instant. A ``start`` above ``cap``
    gives ``cap`` from the first attempt on.
    """

    start: float
    cap: float
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (self.start > 0 and self.cap > 0):
            raise ValueError(f"start and cap must be positive, got {self.start}, {self.cap}")
        if not self.factor >= 1:
            raise ValueError(f"factor must be at least 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter}")

    def ceiling(self, attempt: int) -> float:
        """The longest delay after failed attempt number ``attempt`` (counted from 1)."""
        if attempt < 1:
            raise ValueError(f"attempts count from 1, got {attempt}")
        start = min(self.start, self.cap)
        # Compared in logarithms: factor ** attempt overflows a float long before attempts run out.
        if self.factor == 1 or (attempt - 1) * math.log(self.factor) < math.log(self.cap / start):
            return min(self.cap, start * self.factor ** (attempt - 1))
        return self.cap

    def delay(self, attempt: int, rng: random.Random) -> float:
        """A jittered delay after failed attempt number ``attempt``."""
        return self.ceiling(attempt) * rng.uniform(1.0 - self.jitter, 1.0)

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The delays after attempts 1, 2, 3, ... without end.

        Without ``rng`` each sequence draws from its own ``random.Random``, made (and seeded
        from the OS) only once the first delay is asked for: a loop that starts a sequence on
        every call pays for that only when something fails.
        """
        draw = rng if rng is not None else random.Random()
        for attempt in itertools.count(1):
            yield self.delay(attempt, draw)


async def pause(seconds: float, *events: asyncio.Event) -> bool:
    """Sleep ``seconds``, or less once one of ``events`` is set; True if one is set."""
    if not events:
        await asyncio.sleep(seconds)
        return False
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    return any(event.is_set() for event in events)
