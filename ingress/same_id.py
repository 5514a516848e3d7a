"""Publishes that share a message id: never two on the channel at once.

A Basic.Return names its message only by message_id, and both publishers map that id back to
the one publish it belongs to (aiormq keeps a dict from message id to delivery tag; aio-pika
issue #689 reports hangs from two publishes sharing one). With two publishes of one id in flight,
a returned (unroutable) one could be reported as confirmed. So a publish of an id waits until
the one in flight is settled, then goes out itself; each is still published and confirmed.
Every wait counts against the caller's own deadline; other ids never wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from shared.messaging import publish_failed


class SameIdGate:
    """The publishes in flight by message id; ``publish`` goes through it."""

    def __init__(self) -> None:
        self._in_flight: dict[str, asyncio.Future[None]] = {}

    def in_flight(self, message_id: str) -> bool:
        """Whether a publish of ``message_id`` is awaiting its outcome."""
        return message_id in self._in_flight

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
        """``send()`` once no publish of ``message_id`` is in flight.

        ``deadline`` is on the event loop's clock; waiting past it raises PublishError
        ("timeout"). ``send`` raises PublishError when the broker does not confirm.
        """
        while (current := self._in_flight.get(message_id)) is not None:
            try:
                async with asyncio.timeout_at(deadline):
                    await asyncio.shield(current)
            except TimeoutError as exc:
                raise publish_failed(exchange, "timeout") from exc
        settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._in_flight[message_id] = settled
        try:
            await send()
        finally:
            del self._in_flight[message_id]
            settled.set_result(None)
