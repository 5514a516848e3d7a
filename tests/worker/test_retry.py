"""worker.retry: delay tiers with an attempt header, then the dead letters, on the real broker."""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from shared.messaging import HDR_ATTEMPT, HDR_FAILED_AT, HDR_REASON, HDR_SOURCE_QUEUE
from tests.worker.conftest import QueueDriver
from worker.deps import Deps
from worker.retry import dead_letter, retry_later


async def take_one(broker: QueueDriver, queue: str, body: bytes, headers: dict[str, object]) -> Any:
    await broker.channel.default_exchange.publish(
        aio_pika.Message(body, headers=headers, message_id="m-1"), queue
    )
    [message] = await broker.wait_for(queue, 1)
    return message


async def test_retry_later_parks_a_copy_that_returns_with_attempt_one(
    deps: Deps, broker: QueueDriver
) -> None:
    queue = deps.names.events_queue
    message = await take_one(broker, queue, b'{"event":"x"}', {"x-event-id": "e1"})

    assert (
        await retry_later(message, deps, source_queue=queue, reason="order_not_found") == "retried"
    )

    [back] = await broker.wait_for(queue, 1)
    assert back.body == b'{"event":"x"}'
    assert back.message_id == "m-1"
    assert back.headers[HDR_ATTEMPT] == 1
    assert back.headers["x-event-id"] == "e1"


async def test_after_the_last_tier_the_message_is_dead_lettered_with_its_reason(
    deps: Deps, broker: QueueDriver
) -> None:
    queue = deps.names.events_queue
    tiers = len(deps.settings.worker_retry_delays_seconds)
    message = await take_one(broker, queue, b"{}", {HDR_ATTEMPT: tiers})

    assert await retry_later(message, deps, source_queue=queue, reason="order_not_found") == (
        "dead_lettered"
    )

    [dead] = await broker.wait_for(deps.names.dead_letters_queue, 1)
    assert dead.headers[HDR_REASON] == "order_not_found"
    assert dead.headers[HDR_SOURCE_QUEUE] == queue
    assert dead.headers[HDR_ATTEMPT] == tiers
    assert HDR_FAILED_AT in dead.headers


async def test_dead_letter_keeps_the_original_body_and_headers(
    deps: Deps, broker: QueueDriver
) -> None:
    queue = deps.names.events_queue
    message: AbstractIncomingMessage = await take_one(broker, queue, b"not json", {"k": "v"})

    await dead_letter(message, deps, source_queue=queue, reason="invalid_payload")

    [dead] = await broker.wait_for(deps.names.dead_letters_queue, 1)
    assert dead.body == b"not json"
    assert dead.headers["k"] == "v"
    assert dead.headers[HDR_REASON] == "invalid_payload"
