"""Delayed retries through per-tier TTL queues, and the dead-letter parking lot.

A retry is a confirmed publish of a copy with ``x-attempt`` + 1 to the next tier's delay queue,
whose TTL dead-letters it back to the source queue. The caller acks the original only after
this returns, so a failed hand-off (PublishError) leaves the original unacked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, DeliveryMode

from shared import metrics
from shared.messaging import (
    BROKER_DEATH_HEADERS,
    HDR_ATTEMPT,
    HDR_FAILED_AT,
    HDR_REASON,
    HDR_ROUTING_KEY,
    HDR_SOURCE_QUEUE,
    publish_confirmed,
)
from worker.deps import Deps

RetryResult = Literal["retried", "dead_lettered"]


def attempt_of(message: AbstractIncomingMessage) -> int:
    """How many delayed retries this message has been through already (0 the first time)."""
    raw = (message.headers or {}).get(HDR_ATTEMPT, 0)
    if isinstance(raw, bool):
        return 0
    if isinstance(raw, int):
        return max(raw, 0)
    if isinstance(raw, str | bytes):
        try:
            return max(int(raw), 0)
        except ValueError:
            return 0
    return 0


def routing_key_of(message: AbstractIncomingMessage) -> str:
    """The routing key the message was first published with, through any retries."""
    original = (message.headers or {}).get(HDR_ROUTING_KEY)
    return original if isinstance(original, str) else message.routing_key or ""


def _own_headers(message: AbstractIncomingMessage) -> dict[str, Any]:
    headers = {k: v for k, v in (message.headers or {}).items() if k not in BROKER_DEATH_HEADERS}
    headers[HDR_ROUTING_KEY] = routing_key_of(message)
    return headers


def persistent_copy(message: AbstractIncomingMessage, headers: dict[str, Any]) -> aio_pika.Message:
    """A persistent copy keeping the original body, message id, type and timestamp."""
    return aio_pika.Message(
        message.body,
        headers=headers,
        message_id=message.message_id,
        content_type=message.content_type or "application/json",
        correlation_id=message.correlation_id,
        timestamp=message.timestamp,
        type=message.type,
        delivery_mode=DeliveryMode.PERSISTENT,
    )


async def retry_later(
    message: AbstractIncomingMessage, deps: Deps, *, source_queue: str, reason: str
) -> RetryResult:
    """Park a copy on the next delay tier, or dead-letter it after the last tier."""
    attempt = attempt_of(message)
    delays = deps.settings.worker_retry_delays_seconds
    if attempt >= len(delays):
        await dead_letter(message, deps, source_queue=source_queue, reason=reason)
        return "dead_lettered"
    delay = delays[attempt]
    headers = {**_own_headers(message), HDR_ATTEMPT: attempt + 1}
    queue = deps.names.retry_queue(source_queue, delay)
    await publish_confirmed(
        deps.channel,
        "",
        queue,
        persistent_copy(message, headers),
        timeout=deps.settings.amqp_publish_timeout_seconds,
    )
    metrics.MESSAGE_RETRIES.labels(_label(deps, source_queue), f"{delay:g}").inc()
    return "retried"


async def dead_letter(
    message: AbstractIncomingMessage, deps: Deps, *, source_queue: str, reason: str
) -> None:
    """Publish a copy to the dead-letter queue with the reason, source queue, attempt and time."""
    headers = {
        **_own_headers(message),
        HDR_REASON: reason,
        HDR_SOURCE_QUEUE: source_queue,
        HDR_ATTEMPT: attempt_of(message),
        HDR_FAILED_AT: datetime.now(UTC).isoformat(),
    }
    await publish_confirmed(
        deps.channel,
        "",
        deps.names.dead_letters_queue,
        persistent_copy(message, headers),
        timeout=deps.settings.amqp_publish_timeout_seconds,
    )
    metrics.DEAD_LETTERS.labels(_label(deps, source_queue), reason).inc()


def _label(deps: Deps, queue: str) -> str:
    """The queue's name without the environment prefix: a stable metric label."""
    return queue.removeprefix(deps.names.prefix)
