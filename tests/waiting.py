"""Plain helpers shared by the tests: read a Prometheus sample, wait for a condition."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

from prometheus_client import REGISTRY


def sample(name: str, /, **labels: str) -> float:
    """A Prometheus sample's current value in this process; 0 before it exists."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 15.0, interval: float = 0.05
) -> None:
    """Poll ``predicate`` (plain or async) until it holds; TimeoutError after ``timeout`` s."""
    async with asyncio.timeout(timeout):
        while True:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(interval)
