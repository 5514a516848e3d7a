"""Reconciling webhook events: inbox, order lookup, re-polled execution, state machine.

No AMQP here. The consumer parses messages, re-polls their executions with ``repoll`` and hands
the ready deliveries to ``reconcile_batch`` inside one ``sessions.begin()`` block; it gets one
Outcome per delivery back and owns acks, retries and dead letters. Every write for a batch
(inbox rows, order updates, transitions, outbox rows) commits or rolls back together, so a
rolled-back batch leaves no inbox row behind and its retry is never taken for a duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared import metrics
from shared.db.models import InboxEntry, Order, table_of
from shared.errors import InvalidPayload
from shared.events import WebhookEvent
from shared.order_store import Change, apply_observations, order_money
from shared.payment_attempts import earlier_attempts
from shared.payrails.client import PayrailsClient
from shared.payrails.errors import PayrailsError, PayrailsTransientError
from shared.payrails.models import Execution
from shared.state_machine import Cause, Observation, Transition, with_reported_unknown
from worker.operation_events import OperationResult, operation_kind, reconcile_operation


class Outcome(StrEnum):
    """What happened to one event; the consumer maps each to an ack, a retry or a dead letter."""

    RECONCILED = "reconciled"  # the re-polled execution was applied (the order may not move)
    DUPLICATE = "duplicate"  # the inbox already held this event id
    IGNORED = "ignored"  # an event we do not reconcile: recorded, nothing else
    ORDER_NOT_FOUND = "order_not_found"  # no order yet (webhook before the order row)
    PAYRAILS_UNAVAILABLE = "payrails_unavailable"  # re-poll failed transiently
    PAYRAILS_REJECTED = "payrails_rejected"  # re-poll refused for good (4xx, bad body)
    NO_EXECUTION_ID = "no_execution_id"  # a reconciled event naming no execution
    EXECUTION_MISMATCH = "execution_mismatch"  # the execution belongs to another order
    # an operation report that may be about an operation whose call is not answered yet
    OPERATION_NOT_SENT = "operation_not_sent"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One parsed event, when the ingress received it, and its re-polled execution."""

    event: WebhookEvent
    received_at: datetime | None = None
    execution: Execution | None = None


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    order_reference: str | None = None
    transition: Transition | None = None


Repolled = dict[str, Execution | PayrailsError | InvalidPayload]


def parse_received_at(raw: object) -> datetime | None:
    """The ingress's ``x-received-at`` header (ISO-8601, or epoch seconds) as an aware time."""
    if isinstance(raw, bytes):
        raw = raw.decode(errors="replace")
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return datetime.fromtimestamp(raw, UTC)
    if not isinstance(raw, str) or not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def known_event_ids(session: AsyncSession, event_ids: Iterable[str]) -> set[str]:
    """The ids among ``event_ids`` the inbox already holds (a cheap pre-check before re-polls)."""
    ids = list(set(event_ids))
    if not ids:
        return set()
    rows = await session.scalars(select(InboxEntry.event_id).where(InboxEntry.event_id.in_(ids)))
    return set(rows)


async def _fetch(
    payrails: PayrailsClient, execution_id: str
) -> Execution | PayrailsError | InvalidPayload:
    try:
        return await payrails.get_execution(execution_id)
    except (PayrailsError, InvalidPayload) as exc:
        return exc
    except ValueError as exc:  # an execution id the client refuses to put in a URL
        return InvalidPayload(str(exc))


async def repoll(payrails: PayrailsClient, execution_ids: Iterable[str]) -> Repolled:
    """GET each distinct execution once, concurrently; errors are returned, not raised."""
    ids = sorted(set(execution_ids))
    answers = await asyncio.gather(*(_fetch(payrails, i) for i in ids), return_exceptions=True)
    result: Repolled = {}
    for execution_id, answer in zip(ids, answers, strict=True):
        if isinstance(answer, Execution | PayrailsError | InvalidPayload):
            result[execution_id] = answer
            metrics.REPOLLS.labels(repoll_label(answer)).inc()
        else:
            raise answer  # a bug, not a Payrails answer: let the consumer's safety net see it
    return result


def repoll_label(answer: Execution | PayrailsError | InvalidPayload) -> str:
    """The recon_repolls_total outcome: ok, unavailable or rejected."""
    if isinstance(answer, Execution):
        return "ok"
    return "unavailable" if isinstance(answer, PayrailsTransientError) else "rejected"


def repoll_outcome(answer: Execution | PayrailsError | InvalidPayload | None) -> Outcome | None:
    """None when the re-poll produced an execution; otherwise why the event cannot go on."""
    if answer is None:
        return Outcome.NO_EXECUTION_ID
    if isinstance(answer, PayrailsTransientError):
        return Outcome.PAYRAILS_UNAVAILABLE
    if isinstance(answer, PayrailsError | InvalidPayload):
        return Outcome.PAYRAILS_REJECTED
    return None


@dataclass(slots=True)
class _Locked:
    by_execution: dict[str, Order]
    by_reference: dict[str, Order]
    # executions of replaced payment attempts -> their order's reference (never locked: unused)
    earlier: dict[str, str] = field(default_factory=dict)

    def find(self, event: WebhookEvent) -> Order | None:
        """By execution id; else by merchantReference, only an order not bound to another one.

        An earlier payment attempt's execution finds no order to apply to, not even by its
        reference (the order may be between attempts, bound to no execution yet).
        """
        order = self.by_execution.get(event.execution_id or "")
        if order is not None:
            return order
        if event.execution_id in self.earlier:
            return None
        order = self.by_reference.get(event.merchant_reference or "")
        if order is None or order.execution_id not in (None, event.execution_id):
            return None
        return order


async def lock_orders(session: AsyncSession, events: Sequence[WebhookEvent]) -> _Locked:
    """Lock every order the events name, in id order.

    By execution id first; the merchantReference fallback only reaches orders that are not bound
    to an execution yet, so one execution's state never lands on another execution's order.
    """
    execution_ids = sorted({e.execution_id for e in events if e.execution_id})
    query = select(Order).order_by(Order.id).with_for_update()
    by_execution: dict[str, Order] = {}
    if execution_ids:
        rows = await session.scalars(query.where(Order.execution_id.in_(execution_ids)))
        by_execution = {o.execution_id: o for o in rows if o.execution_id}
    locked = _Locked(by_execution, {o.reference: o for o in by_execution.values()})
    locked.earlier = await earlier_attempts(
        session, (i for i in execution_ids if i not in by_execution)
    )
    missing = sorted(
        {e.merchant_reference for e in events if e.merchant_reference and locked.find(e) is None}
    )
    if missing:
        rows = await session.scalars(
            query.where(Order.reference.in_(missing), Order.execution_id.is_(None))
        )
        locked.by_reference.update({o.reference: o for o in rows})
    return locked


async def record_inbox(session: AsyncSession, deliveries: Sequence[Delivery]) -> set[str]:
    """Insert one inbox row per event id; return the ids that were new."""
    rows = {
        d.event.event_id: {
            "event_id": d.event.event_id,
            "event_name": d.event.name[:64],
            "execution_id": (d.event.execution_id or "")[:64] or None,
            "merchant_reference": (d.event.merchant_reference or "")[:64] or None,
            "received_at": d.received_at,
            "outcome": (Outcome.RECONCILED if d.event.is_reconciled else Outcome.IGNORED).value,
        }
        for d in deliveries
    }
    if not rows:
        return set()
    stmt = (
        insert(table_of(InboxEntry))  # Core: one multi-row INSERT ... RETURNING
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(table_of(InboxEntry).c.event_id)
    )
    return set(await session.scalars(stmt, list(rows.values())))


def belongs_to(order: Order, execution: Execution | None, bound: str | None) -> bool:
    """Whether the re-polled execution may be applied to ``order`` (bound to ``bound``, if any).

    The execution must name the order's reference (when it names one) and the order must be
    unbound or bound to this very execution.
    """
    if execution is None:
        return True
    if execution.merchant_reference and execution.merchant_reference != order.reference:
        return False
    return bound in (None, execution.id)


def observe(order: Order, delivery: Delivery) -> Observation:
    """The re-polled execution against the order's amount, and what the webhook reported.

    An outcome counts as unknown when either the polled execution or the webhook that
    triggered the poll says so (``with_reported_unknown``): a webhook reporting
    ``ProviderTimeout`` sends the order to ``needs_review`` even if the poll reads failed.
    """
    assert delivery.execution is not None  # the consumer only passes re-polled deliveries
    observed = Observation.from_execution(delivery.execution, order_money(order))
    return with_reported_unknown(observed, delivery.event.unknown_result)


def _change(order: Order, delivery: Delivery) -> Change:
    assert delivery.execution is not None  # the consumer only passes re-polled deliveries
    return Change(
        order,
        observe(order, delivery),
        event_id=delivery.event.event_id,
        webhook_received_at=delivery.received_at,
        detail={"event": delivery.event.name, "executionStatus": delivery.execution.latest_code},
        execution_id=delivery.execution.id,
    )


def _targets(locked: _Locked, deliveries: Sequence[Delivery]) -> list[Order | None]:
    """The order each delivery may be applied to, in order; None when none or a mismatch."""
    bound: dict[int, str | None] = {}  # order id -> execution id, as this batch binds them
    targets: list[Order | None] = []
    for delivery in deliveries:
        order = locked.find(delivery.event) if delivery.event.is_reconciled else None
        if order is not None:
            binding = bound.setdefault(order.id, order.execution_id)
            if belongs_to(order, delivery.execution, binding):
                bound[order.id] = delivery.execution.id if delivery.execution else binding
            else:
                order = None
        targets.append(order)
    return targets


async def reconcile_batch(session: AsyncSession, deliveries: Sequence[Delivery]) -> list[Result]:
    """Inbox, lock, apply, in the caller's transaction; one Result per delivery, in order.

    An event whose order does not exist yet, or whose execution belongs to another order, writes
    nothing (not even its inbox row), so its delayed retry or replay is processed afresh. An order
    matched by reference learns its execution id here. The state machine runs through
    ``shared.order_store.apply_observations``: the same rules as ``apply_observation``, in bulk.
    """
    reconciled = [d.event for d in deliveries if d.event.is_reconciled]
    locked = await lock_orders(session, reconciled)
    targets = _targets(locked, deliveries)
    recordable = [
        d
        for d, order in zip(deliveries, targets, strict=True)
        if not d.event.is_reconciled or order
    ]
    new_ids = await record_inbox(session, recordable)
    results: list[Result] = []
    changes: dict[int, Change] = {}  # index in results -> change to apply
    for delivery, order in zip(deliveries, targets, strict=True):
        event = delivery.event
        earlier = locked.earlier.get(event.execution_id or "")
        if event.is_reconciled and order is None and earlier is not None:
            # A replaced attempt's report: its order moved on to another execution.
            results.append(Result(Outcome.IGNORED, earlier))
        elif event.is_reconciled and order is None:
            results.append(Result(_unmatched(locked, delivery)))
        elif event.event_id not in new_ids:
            results.append(Result(Outcome.DUPLICATE, order.reference if order else None))
        elif order is None:
            results.append(Result(Outcome.IGNORED))
        else:
            changes[len(results)] = _change(order, delivery)
            results.append(Result(Outcome.RECONCILED, order.reference))
        new_ids.discard(event.event_id)  # a second copy inside this batch is a duplicate
    transitions = await apply_observations(session, list(changes.values()), Cause.WEBHOOK)
    for index, transition in zip(changes, transitions, strict=True):
        results[index] = replace(results[index], transition=transition)
    # Capture, cancel and refund reports, after the batch's transitions: an instant capture's
    # report may be what first shows the order authorized.
    for index, change in changes.items():
        delivery = deliveries[index]
        if operation_kind(delivery.event) is None:
            continue
        done = await reconcile_operation(session, change.order, delivery.event, delivery.execution)
        if done is OperationResult.AWAITING_CALL:
            # Retried afresh later, so its inbox row goes with this attempt.
            event_id = delivery.event.event_id
            await session.execute(delete(InboxEntry).where(InboxEntry.event_id == event_id))
            results[index] = Result(Outcome.OPERATION_NOT_SENT, change.order.reference)
    return results


def _unmatched(locked: _Locked, delivery: Delivery) -> Outcome:
    """Why a reconciled event has no order to apply to: none yet, or the execution disagrees."""
    return Outcome.EXECUTION_MISMATCH if locked.find(delivery.event) else Outcome.ORDER_NOT_FOUND
