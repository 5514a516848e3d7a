"""The webhook-events consumer: AMQP only (qos, consume, batches, ack/retry/dead-letter routing).

Deliveries are buffered and taken in batches by a few concurrent loops: one transaction per
batch, acks only after its commit. A busy worker therefore batches by itself, while a quiet one
handles each event at once. When the database is unavailable the batch is held, unacked, and
retried once the database answers again: nothing is acked and nothing is lost, however long the
outage. A batch that keeps failing while the database does answer (a statement timeout, a lock
it cannot get) is split, and a single message that keeps failing goes to the delay tiers, so
one bad message never pins a batch loop. A retry or dead-letter hand-off the broker refuses is
held and tried again with growing delays; only shutdown requeues it. Payrails failures and
missing orders go to the delay tiers; poison goes to dead letters.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

import aiormq
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError
from sqlalchemy import text
from structlog.contextvars import bound_contextvars

from shared import metrics
from shared.backoff import Backoff, pause
from shared.db.failover import is_database_unavailable
from shared.errors import InvalidPayload, PublishError
from shared.event_registry import event_label
from shared.events import WebhookEvent
from shared.messaging import HDR_RECEIVED_AT
from shared.payrails.models import Execution
from worker.deps import Deps
from worker.events import (
    Delivery,
    Outcome,
    Result,
    known_event_ids,
    parse_received_at,
    reconcile_batch,
    repoll,
    repoll_outcome,
)
from worker.retry import attempt_of, dead_letter, retry_later

log = structlog.get_logger("worker.events")
T = TypeVar("T")

_ACKED = frozenset({Outcome.RECONCILED, Outcome.DUPLICATE, Outcome.IGNORED})
_RETRIED = frozenset(
    {Outcome.ORDER_NOT_FOUND, Outcome.PAYRAILS_UNAVAILABLE, Outcome.OPERATION_NOT_SENT}
)
_DB_BACKOFF = Backoff(start=0.2, cap=5.0)
_DB_FAILURES_WHILE_UP = 3  # failures of one batch, with the database answering, before a split
_HANDOFF_BACKOFF = Backoff(start=0.2, cap=10.0)


class _Stopping(Exception):
    """Raised inside a held batch when shutdown begins; its messages are requeued."""


class _BatchFailing(Exception):
    """This batch keeps failing although the database answers: the fault is in its messages."""


@dataclass(slots=True)
class HeldDelivery:
    """A delivery this worker owns until it is acked, retried, dead-lettered or requeued."""

    message: AbstractIncomingMessage
    started: float = field(default_factory=time.perf_counter)
    delivery: Delivery | None = None

    @property
    def label(self) -> str:
        return event_label(self.delivery.event.name) if self.delivery else "unparseable"


class EventsConsumer:
    """Consumes the webhook-events queue; ``start`` then ``stop`` (from SIGTERM)."""

    def __init__(self, deps: Deps, channel: AbstractChannel) -> None:
        self._deps = deps
        self._channel = channel
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._buffer: list[HeldDelivery] = []
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._cancelled = asyncio.Event()  # set by stop() once the broker sends us nothing more
        self._unsettled: set[int] = set()
        self._owned: dict[int, HeldDelivery] = {}
        self._loops: list[asyncio.Task[None]] = []

    @property
    def source_queue(self) -> str:
        return self._deps.names.events_queue

    @property
    def in_flight(self) -> int:
        """Deliveries taken from the queue and not yet acked, retried, dead-lettered or requeued."""
        return len(self._unsettled)

    async def start(self) -> None:
        """Set the prefetch, start the batch loops, then start consuming."""
        settings = self._deps.settings
        await self._channel.set_qos(prefetch_count=settings.worker_prefetch)
        self._queue = await self._channel.get_queue(self.source_queue)
        self._loops = [
            asyncio.create_task(self._batch_loop(), name=f"events-batch-{i}")
            for i in range(settings.worker_event_batches)
        ]
        self._tag = await self._queue.consume(self._on_message)
        log.info("consumer.started", queue=self.source_queue, prefetch=settings.worker_prefetch)

    async def stop(self) -> None:
        """Stop deliveries; batches in flight get the grace period; requeue the rest.

        Nothing is requeued before the broker has confirmed the cancel: a message requeued while
        this consumer is still subscribed would come straight back, spending its delivery limit.
        """
        self._stopping.set()
        if self._queue is not None and self._tag is not None:
            with contextlib.suppress(AMQPError, aiormq.exceptions.AMQPError, RuntimeError):
                await self._queue.cancel(self._tag)
        self._cancelled.set()
        self._wakeup.set()
        grace = self._deps.settings.worker_shutdown_grace_seconds
        if self._loops:
            _, pending = await asyncio.wait(self._loops, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        leftover = [self._owned[key] for key in list(self._unsettled)]
        for held in leftover:
            await self._requeue(held)
        log.info("consumer.stopped", queue=self.source_queue, requeued=len(leftover))

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        held = HeldDelivery(message)
        self._own(held)
        if self._stopping.is_set():
            return  # requeued by stop() once the cancel is confirmed
        self._buffer.append(held)
        self._wakeup.set()

    def _own(self, held: HeldDelivery) -> None:
        key = id(held)
        self._owned[key] = held
        self._unsettled.add(key)

    def _release(self, held: HeldDelivery) -> None:
        self._unsettled.discard(id(held))
        self._owned.pop(id(held), None)

    async def _batch_loop(self) -> None:
        size = self._deps.settings.worker_event_batch_size
        while not self._stopping.is_set():
            await self._wakeup.wait()
            batch, self._buffer = self._buffer[:size], self._buffer[size:]
            if not self._buffer and not self._stopping.is_set():
                self._wakeup.clear()
            if batch and not self._stopping.is_set():
                await self.process(batch)

    async def process(self, batch: list[HeldDelivery]) -> None:
        """Process a batch; on an unexpected error, retry its messages one by one."""
        try:
            await self.settle(await self.commit(batch))
        except _Stopping:
            return  # still unsettled: requeued by stop()
        except _BatchFailing:
            if len(batch) == 1:
                await self._route(batch[0], None, "database_error", retry=True)
                return
            log.warning("events.batch_split", size=len(batch))
            for held in batch:
                if id(held) in self._unsettled:
                    await self.process([held])
        except Exception:
            if len(batch) == 1:
                log.exception("event.failed")
                await self._route(batch[0], None, "processing_error")
                return
            log.exception("events.batch_failed", size=len(batch))
            for held in batch:
                if id(held) in self._unsettled:
                    await self.process([held])

    async def commit(
        self, batch: list[HeldDelivery]
    ) -> list[tuple[HeldDelivery, Result | None, str | None]]:
        """Parse, drop known duplicates, re-poll, reconcile and COMMIT; nothing is acked here.

        Returns each message with its Result, or with None and a dead-letter/retry reason.
        """
        done: list[tuple[HeldDelivery, Result | None, str | None]] = []
        parsed: list[HeldDelivery] = []
        for held in batch:
            try:
                held.delivery = _parse(held.message)
                parsed.append(held)
            except InvalidPayload:
                done.append((held, None, "invalid_payload"))
        known = await self._with_database(lambda: self._known([h.delivery for h in parsed]))
        fresh: list[HeldDelivery] = []
        for held in parsed:
            assert held.delivery is not None
            if held.delivery.event.event_id in known:
                done.append((held, Result(Outcome.DUPLICATE), None))
            else:
                fresh.append(held)
        ready = await self._repoll(fresh, done)
        results = await self._with_database(lambda: self._reconcile(ready))
        done += list(zip(ready, results, [None] * len(ready), strict=True))
        return done

    async def settle(self, done: list[tuple[HeldDelivery, Result | None, str | None]]) -> None:
        """Ack, retry or dead-letter each processed message (after the commit)."""
        for held, result, reason in done:
            await self._route(held, result, reason)

    async def _known(self, deliveries: list[Delivery | None]) -> set[str]:
        ids = [d.event.event_id for d in deliveries if d is not None]
        if not ids:
            return set()
        async with self._deps.sessions() as session:
            return await known_event_ids(session, ids)

    async def _repoll(
        self, fresh: list[HeldDelivery], done: list[tuple[HeldDelivery, Result | None, str | None]]
    ) -> list[HeldDelivery]:
        wanted = [h.delivery.event for h in fresh if h.delivery and h.delivery.event.is_reconciled]
        answers = await repoll(
            self._deps.payrails, [e.execution_id for e in wanted if e.execution_id]
        )
        ready: list[HeldDelivery] = []
        for held in fresh:
            assert held.delivery is not None
            event = held.delivery.event
            if not event.is_reconciled:
                ready.append(held)
                continue
            answer = answers.get(event.execution_id) if event.execution_id else None
            if not isinstance(answer, Execution):
                done.append((held, Result(repoll_outcome(answer) or Outcome.NO_EXECUTION_ID), None))
                continue
            held.delivery = replace(held.delivery, execution=answer)
            ready.append(held)
        return ready

    async def _reconcile(self, ready: list[HeldDelivery]) -> list[Result]:
        if not ready:
            return []
        deliveries = [h.delivery for h in ready if h.delivery is not None]
        async with self._deps.sessions.begin() as session:
            return await reconcile_batch(session, deliveries)

    async def _with_database(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run ``operation``; while the database is unavailable, hold and try again.

        Failures while a probe shows the database answering are counted: after a few, the
        batch is given up (``_BatchFailing``) instead of being held forever.
        """
        delays = _DB_BACKOFF.delays()
        failures_while_up = 0
        while True:
            try:
                return await operation()
            except Exception as exc:
                if not is_database_unavailable(exc):
                    raise
                metrics.DATABASE_FAILURES.labels("events").inc()
                if await self._database_answers():
                    failures_while_up += 1
                    if failures_while_up >= _DB_FAILURES_WHILE_UP:
                        raise _BatchFailing from exc
                delay = next(delays)
                log.warning("database.unavailable", error=type(exc).__name__, retry_in=delay)
            if await pause(delay, self._cancelled):
                raise _Stopping

    async def _database_answers(self) -> bool:
        """The database answers as a primary: a standby (or a read-only node a writer endpoint
        still names during a failover) answers, but every write would fail."""
        try:
            async with self._deps.sessions() as session:
                read_only = await session.scalar(text("SHOW transaction_read_only"))
        except Exception:
            return False
        return bool(read_only == "off")

    async def _route(
        self, held: HeldDelivery, result: Result | None, reason: str | None, *, retry: bool = False
    ) -> None:
        """Turn one outcome into exactly one of: ack, retry copy + ack, dead letter + ack.

        A hand-off the broker refuses is tried again after growing delays (the message stays
        held, unacked); shutdown requeues it instead.
        """
        outcome = result.outcome if result else None
        if outcome not in _ACKED:
            reason = reason or (outcome.value if outcome else "processing_error")
        delays = _HANDOFF_BACKOFF.delays()
        while True:
            try:
                action = await self._hand_off(held, outcome, reason, retry=retry)
                break
            except PublishError as exc:
                delay = next(delays)
                log.warning("event.handoff_failed", error=exc.reason, retry_in=delay)
            if await pause(delay, self._cancelled):  # set once requeueing is safe
                await self._requeue(held)
                self._log(held, result, "requeued", reason)
                return
        await self._ack(held)
        self._log(held, result, action, None if outcome in _ACKED else reason)

    async def _hand_off(
        self, held: HeldDelivery, outcome: Outcome | None, reason: str | None, *, retry: bool
    ) -> str:
        """Publish the retry copy or the dead letter this outcome needs; the action taken."""
        if outcome in _ACKED:
            return outcome.value if outcome else "acked"
        reason = reason or "processing_error"
        if retry or outcome in _RETRIED:
            return await retry_later(
                held.message, self._deps, source_queue=self.source_queue, reason=reason
            )
        await dead_letter(held.message, self._deps, source_queue=self.source_queue, reason=reason)
        return "dead_lettered"

    async def _ack(self, held: HeldDelivery) -> None:
        try:
            await held.message.ack()
        except (ChannelInvalidStateError, AMQPError, aiormq.exceptions.AMQPError, RuntimeError):
            # The channel died after the commit: the broker redelivers; the inbox dedupes it.
            log.warning("event.ack_failed")
        finally:
            self._release(held)

    async def _requeue(self, held: HeldDelivery) -> None:
        try:
            await held.message.nack(requeue=True)
        except (ChannelInvalidStateError, AMQPError, aiormq.exceptions.AMQPError, RuntimeError):
            log.warning("event.nack_failed")  # a closed channel requeues it anyway
        finally:
            self._release(held)

    def _log(
        self, held: HeldDelivery, result: Result | None, action: str, reason: str | None
    ) -> None:
        """The one line per message, and its metrics."""
        event = held.delivery.event if held.delivery else None
        elapsed = time.perf_counter() - held.started
        metrics.EVENTS_PROCESSED.labels(held.label, action).inc()
        metrics.EVENT_PROCESSING_SECONDS.labels(action).observe(elapsed)
        transition = result.transition if result else None
        with bound_contextvars(
            event_id=event.event_id if event else held.message.message_id,
            execution_id=event.execution_id if event else None,
            order_reference=(result.order_reference if result else None)
            or (event.merchant_reference if event else None),
        ):
            log.info(
                "event.processed",
                event_name=event.name if event else None,
                outcome=action,
                reason=reason,
                to_status=transition.to_status.value if transition else None,
                attempt=attempt_of(held.message),
                redelivered=held.message.redelivered,
                duration_ms=round(elapsed * 1000, 2),
            )


def _parse(message: AbstractIncomingMessage) -> Delivery:
    event = WebhookEvent.from_body(message.body)
    received = parse_received_at((message.headers or {}).get(HDR_RECEIVED_AT))
    return Delivery(event, received)


Handler = Callable[[AbstractIncomingMessage, Deps], Awaitable[None]]


class HandlerConsumer:
    """Consumes one queue with a per-message handler that settles its own messages."""

    def __init__(self, deps: Deps, channel: AbstractChannel, queue: str, handler: Handler) -> None:
        self._deps = deps
        self._channel = channel
        self._queue_name = queue
        self._handler = handler
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._channel.set_qos(prefetch_count=self._deps.settings.worker_prefetch)
        self._queue = await self._channel.get_queue(self._queue_name)
        self._tag = await self._queue.consume(self._on_message)
        log.info("consumer.started", queue=self._queue_name)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        try:
            await self._handler(message, self._deps)
        finally:
            self._inflight.discard(task)

    async def stop(self) -> None:
        """Stop deliveries; handlers in flight get the grace period; closing requeues the rest."""
        if self._queue is not None and self._tag is not None:
            with contextlib.suppress(AMQPError, aiormq.exceptions.AMQPError, RuntimeError):
                await self._queue.cancel(self._tag)
        if self._inflight:
            await asyncio.wait(
                set(self._inflight), timeout=self._deps.settings.worker_shutdown_grace_seconds
            )
        log.info("consumer.stopped", queue=self._queue_name, unfinished=len(self._inflight))
