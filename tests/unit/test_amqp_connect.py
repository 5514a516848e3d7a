"""Connecting to RabbitMQ through shared.messaging: a failed attempt leaves nothing open."""

from __future__ import annotations

import gc

import aio_pika
import pytest
from aio_pika.exceptions import AMQPConnectionError

from shared.messaging import connect, connect_robust
from tests.ports import free_port


def open_connections_to(port: int) -> list[aio_pika.Connection]:
    gc.collect()
    return [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, aio_pika.Connection) and obj.url.port == port and not obj.is_closed
    ]


@pytest.mark.parametrize("opener", [connect, connect_robust], ids=["plain", "robust"])
async def test_a_refused_connect_is_closed_before_the_error_reaches_the_caller(
    opener: object,
) -> None:
    port = free_port()
    with pytest.raises(AMQPConnectionError):
        await opener(f"amqp://guest:guest@127.0.0.1:{port}/", timeout=2)  # type: ignore[operator]
    assert open_connections_to(port) == []
