"""The dead-letter queue for operators: read it without losing anything, plan, replay, purge.

Reading: ``hold_dead_letters`` takes every message present when it starts with basic.get and
manual acks, on a channel of its own, and acks only those the caller replays. Nothing is nacked
one by one (that would hand the same message straight back to the next get); when the block ends
the channel closes and the broker puts every unacked message back in the queue, untouched. At
most the messages counted at the start are taken, so messages dead-lettered meanwhile, which
queue up behind them, are never read twice.

Replaying republishes a copy to the queue the message failed on (header ``x-source-queue``, or
the ``x-death`` entry when the broker dead-lettered it) with the attempt counter reset, waits for
the broker's confirm, and only then acks the dead letter. A crash in between leaves a duplicate,
never a loss, and the worker's inbox recognises the duplicate.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import Order
from shared.errors import InvalidPayload, ReconError
from shared.events import WebhookEvent
from shared.messaging import (
    BROKER_DEATH_HEADERS,
    HDR_ATTEMPT,
    HDR_EVENT_ID,
    HDR_EVENT_NAME,
    HDR_FAILED_AT,
    HDR_REASON,
    HDR_SOURCE_QUEUE,
    Names,
    publish_confirmed,
)
from shared.order_store import order_money
from shared.payment_attempts import authorize_key
from shared.payrails.client import PayrailsClient
from shared.payrails.models import parse_time
from shared.state_machine import AUTHORIZABLE, Observation, OrderStatus, decide
from worker.retry import persistent_copy

# The idempotency operation the authorize consumer records.

# Headers that describe the failure; a replayed copy starts clean without them.
_FAILURE_HEADERS = BROKER_DEATH_HEADERS | {HDR_REASON, HDR_SOURCE_QUEUE, HDR_FAILED_AT}
HDR_REPLAYED_AT = "x-replayed-at"


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return value if isinstance(value, str) and value else None


def _latest_death(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    """The newest ``x-death`` entry the broker added (it keeps the newest first)."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping):
        return deaths[0]
    return {}


def _attempts(headers: Mapping[str, Any]) -> int:
    """Delayed retries the message went through, else the broker's delivery count."""
    for raw in (headers.get(HDR_ATTEMPT), _latest_death(headers).get("count")):
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        text = _text(raw)
        if text is not None and text.isdigit():
            return int(text)
    return 0


def _subject(body: bytes) -> tuple[str | None, str | None, str | None]:
    """(event name, execution id, order reference) read from a webhook or a command body."""
    try:
        event = WebhookEvent.from_body(body)
    except (InvalidPayload, KeyError, TypeError, ValueError):
        pass
    else:
        return event.name, event.execution_id, event.merchant_reference
    try:
        data = json.loads(body)
    except ValueError:
        return None, None, None
    if not isinstance(data, dict):
        return None, None, None
    return None, _text(data.get("executionId")), _text(data.get("orderReference"))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered message, as an operator reads it."""

    id: str
    reason: str | None
    attempts: int
    failed_at: datetime | None
    source_queue: str | None
    event_name: str | None
    event_id: str | None
    execution_id: str | None
    order_reference: str | None

    def age(self, now: datetime) -> timedelta | None:
        return now - self.failed_at if self.failed_at is not None else None

    @classmethod
    def from_message(cls, message: AbstractIncomingMessage) -> DeadLetter:
        headers: Mapping[str, Any] = message.headers or {}
        death = _latest_death(headers)
        event_name, execution_id, reference = _subject(message.body)
        failed_at: datetime | None = None
        raw_failed = _text(headers.get(HDR_FAILED_AT))
        if raw_failed is not None:
            with contextlib.suppress(InvalidPayload):
                failed_at = parse_time(raw_failed)
        if failed_at is None and isinstance(death.get("time"), datetime):
            failed_at = death["time"].replace(tzinfo=death["time"].tzinfo or UTC)
        if failed_at is None and message.timestamp is not None:
            failed_at = message.timestamp.replace(tzinfo=message.timestamp.tzinfo or UTC)
        return cls(
            id=message.message_id or "sha:" + hashlib.sha256(message.body).hexdigest()[:16],
            reason=_text(headers.get(HDR_REASON)) or _text(death.get("reason")),
            attempts=_attempts(headers),
            failed_at=failed_at,
            source_queue=_text(headers.get(HDR_SOURCE_QUEUE)) or _text(death.get("queue")),
            event_name=_text(headers.get(HDR_EVENT_NAME)) or event_name,
            event_id=_text(headers.get(HDR_EVENT_ID)),
            execution_id=execution_id,
            order_reference=reference,
        )


@dataclass(frozen=True, slots=True)
class HeldLetter:
    """A dead letter taken from the queue, unacked: it goes back unless it is replayed."""

    message: AbstractIncomingMessage
    letter: DeadLetter


async def dead_letter_count(connection: AbstractConnection, names: Names) -> int:
    """Messages ready in the dead-letter queue now."""
    async with connection.channel() as channel:
        queue = await channel.declare_queue(names.dead_letters_queue, passive=True)
        return queue.declaration_result.message_count or 0


@contextlib.asynccontextmanager
async def hold_dead_letters(
    connection: AbstractConnection,
    names: Names,
    *,
    on_message: Callable[[HeldLetter], None] | None = None,
) -> AsyncIterator[list[HeldLetter]]:
    """Take every message in the DLQ unacked; on exit, all that were not acked go back."""
    channel = await connection.channel(publisher_confirms=False)
    try:
        queue = await channel.declare_queue(names.dead_letters_queue, passive=True)
        held: list[HeldLetter] = []
        for _ in range(queue.declaration_result.message_count or 0):
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            item = HeldLetter(message, DeadLetter.from_message(message))
            held.append(item)
            if on_message is not None:
                on_message(item)
        yield held
    finally:
        # Closing the channel returns every unacked message to the queue (AMQP 0-9-1 4.2.8.2).
        await channel.close()


def select_letters(held: Sequence[HeldLetter], *, letter_id: str | None) -> list[HeldLetter]:
    """All held letters, or those whose id is ``letter_id``."""
    if letter_id is None:
        return list(held)
    return [h for h in held if h.letter.id == letter_id]


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """What replaying one dead letter would do to its order, by Payrails' current word."""

    letter: DeadLetter
    order_reference: str | None
    from_status: str | None
    to_status: str | None
    note: str


async def _find_order(session: AsyncSession, letter: DeadLetter) -> Order | None:
    if letter.execution_id is not None:
        found = await session.scalar(select(Order).where(Order.execution_id == letter.execution_id))
        if found is not None:
            return found
    if letter.order_reference is not None:
        return await session.scalar(select(Order).where(Order.reference == letter.order_reference))
    return None


async def plan_replay(
    letter: DeadLetter,
    sessions: async_sessionmaker[AsyncSession],
    payrails: PayrailsClient,
    names: Names,
) -> ReplayPlan:
    """What a replay would do; read-only, nothing changes.

    A webhook is re-polled and the state machine asked. An authorize command is judged the way
    the authorize consumer judges it: a replay POSTs authorize whenever the order is still
    authorizable and its authorize key is not completed, whatever Payrails reports now.
    """
    async with sessions() as session:
        order = await _find_order(session, letter)
        key = None if order is None else await authorize_key(session, order)
        authorize_done = key is not None and key.completed_at is not None
    if order is None:
        return ReplayPlan(letter, letter.order_reference, None, None, "order not found")
    current = order.status
    if letter.source_queue == names.authorize_queue:
        return _plan_authorize(letter, order, current, authorize_done=authorize_done)
    if order.execution_id is None:
        return ReplayPlan(letter, order.reference, current, None, "order has no execution yet")
    try:
        execution = await payrails.get_execution(order.execution_id)
    except ReconError as exc:
        note = f"payrails unavailable: {type(exc).__name__}"
        return ReplayPlan(letter, order.reference, current, None, note)
    transition = decide(current, Observation.from_execution(execution, order_money(order)))
    if transition is None:
        note = f"no change (Payrails: {execution.latest_code or 'no status'})"
        return ReplayPlan(letter, order.reference, current, None, note)
    note = f"Payrails: {execution.latest_code}"
    return ReplayPlan(letter, order.reference, current, transition.to_status, note)


def _plan_authorize(
    letter: DeadLetter, order: Order, current: OrderStatus, *, authorize_done: bool
) -> ReplayPlan:
    """A dead-lettered authorize command: would the consumer POST authorize on replay?"""
    if current not in AUTHORIZABLE:
        reason = f"order is {current.value}"
    elif authorize_done:
        reason = "authorize already completed"
    elif letter.execution_id is not None and letter.execution_id != order.execution_id:
        reason = "command is for another execution"
    elif order.payment_instrument_id is None or order.payment_method_code is None:
        reason = "order has no payment instrument"
    else:
        note = f"would authorize at Payrails ({order_money(order).format_value()} {order.currency})"
        return ReplayPlan(letter, order.reference, current, OrderStatus.AUTHORIZING, note)
    return ReplayPlan(letter, order.reference, current, None, f"skipped ({reason})")


class ReplayError(ReconError):
    """A dead letter cannot be replayed (no known source queue)."""


def replay_target(letter: DeadLetter, names: Names) -> str:
    """The work queue to republish to; only the service's own work queues are accepted."""
    if letter.source_queue is None or letter.source_queue not in names.work_queues:
        raise ReplayError(f"dead letter {letter.id} has no known source queue")
    return letter.source_queue


def replay_copy(message: AbstractIncomingMessage, now: datetime) -> aio_pika.Message:
    """The original body and headers, minus the failure headers, with the attempts reset."""
    headers = {k: v for k, v in (message.headers or {}).items() if k not in _FAILURE_HEADERS}
    headers[HDR_ATTEMPT] = 0
    headers[HDR_REPLAYED_AT] = now.isoformat()
    return persistent_copy(message, headers)


async def replay(
    held: HeldLetter, channel: AbstractChannel, names: Names, *, timeout: float
) -> str:
    """Republish to the source queue, confirmed, then ack the dead letter; return the queue."""
    target = replay_target(held.letter, names)
    copy = replay_copy(held.message, datetime.now(UTC))
    await publish_confirmed(channel, "", target, copy, timeout=timeout)
    await held.message.ack()
    return target


async def purge(connection: AbstractConnection, names: Names) -> int:
    """Delete every message in the dead-letter queue; return how many there were."""
    async with connection.channel() as channel:
        queue = await channel.declare_queue(names.dead_letters_queue, passive=True)
        result = await queue.purge()
        return int(result.message_count or 0)
