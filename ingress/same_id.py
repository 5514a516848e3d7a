"""Publishes that share a message id: never two on the channel at once; identical ones coalesced.

A Basic.Return names its message only by message_id, and both publishers map that id back to
the one publish it belongs to (aiormq keeps a dict from message id to delivery tag; aio-pika
issue #689 reports hangs from two publishes sharing one). With two publishes of one id in flight,
a returned (unroutable) one could be reported as confirmed. So while a publish of an id awaits
its confirm:

- an identical one (same exchange, routing key and body bytes: a retry storm of one webhook) is
  not published again: it waits for the one in flight and takes its outcome. A 200 still means
  that the broker confirmed a persistent, mandatory publish of that very body after this
  delivery arrived. The body is stored once instead of once per copy (the worker drops the
  copies by event id anyway), and the copies neither queue up behind each other nor cost a
  confirm each. The stored message carries the first copy's headers (received-at, key index).
- one with other bytes under the same id waits until the one in flight is settled, then goes
  out itself.

When the one in flight ends without an outcome (its caller was cancelled), a waiting one
publishes itself. Every wait counts against the caller's own deadline; other ids never wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shared import metrics
from shared.errors import PublishError
from shared.messaging import DEFAULT_EXCHANGE_LABEL, publish_failed

# The outcome of a publish whose caller was cancelled before the broker answered.
_ABANDONED = "abandoned"


@dataclass(slots=True)
class _InFlight:
    exchange: str
    routing_key: str
    body: bytes
    # None once confirmed; else the reason it was not (PublishError.reason) or _ABANDONED.
    settled: asyncio.Future[str | None]
    waiting: int = 0  # publishes of the same id waiting for this one

    def same(self, exchange: str, routing_key: str, body: bytes) -> bool:
        return self.exchange == exchange and self.routing_key == routing_key and self.body == body


class SameIdGate:
    """The publishes in flight by message id; every publish of a publisher goes through it."""

    def __init__(self) -> None:
        self._in_flight: dict[str, _InFlight] = {}

    def waiting(self, message_id: str) -> int | None:
        """How many publishes wait for the one of ``message_id`` in flight; None: none in flight."""
        current = self._in_flight.get(message_id)
        return None if current is None else current.waiting

    async def publish(
        self,
        message_id: str,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        deadline: float,
        send: Callable[[], Awaitable[None]],
    ) -> None:
        """``send()`` once no publish of ``message_id`` is in flight, or take an identical one's
        outcome.

        ``deadline`` is on the event loop's clock; waiting past it raises PublishError
        ("timeout"). ``send`` raises PublishError when the broker does not confirm.
        """
        while (current := self._in_flight.get(message_id)) is not None:
            current.waiting += 1
            try:
                async with asyncio.timeout_at(deadline):
                    outcome = await asyncio.shield(current.settled)
            except TimeoutError as exc:
                raise publish_failed(exchange, "timeout") from exc
            finally:
                current.waiting -= 1
            if outcome == _ABANDONED or not current.same(exchange, routing_key, body):
                continue
            metrics.BROKER_PUBLISHES_COALESCED.labels(exchange or DEFAULT_EXCHANGE_LABEL).inc()
            if outcome is None:
                return
            raise PublishError(outcome)
        settled: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._in_flight[message_id] = _InFlight(exchange, routing_key, body, settled)
        outcome = _ABANDONED
        try:
            await send()
            outcome = None
        except PublishError as exc:
            outcome = exc.reason
            raise
        finally:
            del self._in_flight[message_id]
            settled.set_result(outcome)
