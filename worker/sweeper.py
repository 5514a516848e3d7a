"""The sweeper: repair orders whose webhook never came, by re-polling Payrails.

Payrails gives up on a webhook after about 10 tries over 6 hours, and a delivery can be lost on
the way. Every ``SWEEPER_INTERVAL_SECONDS`` the sweeper takes orders stuck in ``authorizing`` or
``action_required`` for longer than ``SWEEPER_STUCK_AFTER_SECONDS``, fetches each execution (a
plain GET, never a long-poll) and reconciles it through ``apply_observation`` with cause
``sweep``. A 3-D Secure challenge left past its expiry ends wherever Payrails says it ended.

Orders left ``created`` are ``worker.abandon``'s: an unpaid one expires, and one whose
place-order began is abandoned only once Payrails shows its execution without an authorize.
The authorize consumer authorizes only ``created``/``authorizing`` orders under the row lock, so a
late command for such an order is skipped. An order in ``authorizing`` whose execution never saw
an authorize (its command was dead-lettered, say) is re-polled like any other until it has been
open for three thresholds, then goes to ``needs_review``: the shopper is gone, so an operator
decides, never an automatic authorize.

Each pass then re-polls captures, cancels and refunds stuck in flight, and sends the command of
those left requested again (``worker/operation_sweeper.py``,
``SWEEPER_OPERATION_STUCK_AFTER_SECONDS``), and flags manual-capture authorizations not captured
in time (``worker/capture_deadline.py``, ``AUTHORIZATION_CAPTURE_WARNING_SECONDS``).

Claiming, and why no row lock is held across the HTTP call: one short transaction selects the
stuck ids ``FOR UPDATE SKIP LOCKED`` and bumps their ``updated_at`` to now. Replicas sweeping at
the same moment skip the locked rows, and once that transaction commits the bumped rows are no
longer "stuck", so no other replica picks them up until a full threshold has passed again. The
bump is the claim marker: it needs no extra column, and it spaces out re-polls of an execution
Payrails still reports as pending. The GET then runs with no transaction open (a slow Payrails
never holds a database lock), and each order is applied in its own short transaction that
re-locks the row, so a webhook that won the race meanwhile simply makes the sweep a no-op.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

import structlog
from sqlalchemy import func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import metrics
from shared.db.models import Order
from shared.errors import ReconError
from shared.money import Money
from shared.operation_states import OperationState
from shared.order_store import apply_observation, lock_order, order_money
from shared.payrails.client import PayrailsClient
from shared.payrails.models import Execution
from shared.state_machine import STUCK, Cause, Observation, OrderStatus, Transition
from worker.abandon import UNCONFIRMED, authorize_never_reached, sweep_created_orders
from worker.capture_deadline import CaptureDue, flag_capture_due
from worker.deps import Deps
from worker.operation_sweeper import resend_commands, sweep_operations

log = structlog.get_logger(__name__)

# An authorizing order whose authorize never reached Payrails goes to review after this many
# thresholds since it was created.
REVIEW_AFTER_THRESHOLDS = 3
# A pass always gets at least this long, however small the threshold.
MIN_PASS_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Claim:
    """A stuck order this sweeper took for one pass."""

    order_id: int
    reference: str
    execution_id: str
    overdue: bool = False  # open for REVIEW_AFTER_THRESHOLDS thresholds already


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one pass did: the orders it claimed, and those it moved (by reference)."""

    claimed: tuple[Claim, ...]
    repaired: dict[str, OrderStatus]
    failed: tuple[str, ...]
    abandoned: tuple[str, ...] = ()
    deferred: tuple[str, ...] = ()  # left created: Payrails did not answer the look-up
    # Captures, cancels and refunds settled by re-polling (worker/operation_sweeper.py), by id.
    operations: Mapping[int, OperationState] = field(default_factory=dict)
    # Operations left requested whose operation.execute command was published again.
    resent: tuple[int, ...] = ()
    # Manual-capture orders whose authorization is near expiry (worker/capture_deadline.py).
    capture_due: tuple[CaptureDue, ...] = ()


async def claim_stuck_orders(
    sessions: async_sessionmaker[AsyncSession], *, stuck_after: float, limit: int
) -> tuple[Claim, ...]:
    """Claim up to ``limit`` stuck orders: SKIP LOCKED, and bump updated_at, in one transaction."""
    stuck = (
        select(Order.id)
        .where(
            Order.status.in_(STUCK),
            # The database's clock, so replicas with skewed clocks agree on what is stuck.
            Order.updated_at < func.now() - timedelta(seconds=stuck_after),
            Order.execution_id.is_not(None),
        )
        .order_by(Order.updated_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    review_after = timedelta(seconds=stuck_after * REVIEW_AFTER_THRESHOLDS)
    claim = (
        update(Order)
        .where(Order.id.in_(stuck.scalar_subquery()))
        .values(updated_at=func.now())
        .returning(
            Order.id,
            Order.reference,
            Order.execution_id,
            Order.created_at < func.now() - literal(review_after),
        )
    )
    async with sessions.begin() as session:
        rows = (await session.execute(claim)).all()
    return tuple(Claim(i, ref, ex, bool(late)) for i, ref, ex, late in rows if ex is not None)


def sweep_observation(
    claim: Claim, current: OrderStatus, execution: Execution, expected: Money | None = None
) -> Observation:
    """What the sweep applies: Payrails' word, or review for an authorize that never arrived.

    ``expected`` is the order's amount: a success for another amount goes to review.
    """
    if claim.overdue and current is OrderStatus.AUTHORIZING and authorize_never_reached(execution):
        return Observation(OrderStatus.NEEDS_REVIEW, reason=UNCONFIRMED)
    return Observation.from_execution(execution, expected)


async def reconcile_claim(
    sessions: async_sessionmaker[AsyncSession], payrails: PayrailsClient, claim: Claim
) -> Transition | None:
    """Re-poll one execution and apply what Payrails reports, with cause sweep."""
    execution = await payrails.get_execution(claim.execution_id)
    async with sessions.begin() as session:
        order = await lock_order(session, order_id=claim.order_id)
        if order is None or order.status not in STUCK:
            return None  # a webhook or a poll got there first
        return await apply_observation(
            session,
            order,
            sweep_observation(claim, order.status, execution, order_money(order)),
            Cause.SWEEP,
            detail={
                "execution_status": execution.latest_code,
                "operation_result": execution.operation_result,
            },
        )


async def sweep_once(deps: Deps) -> SweepResult:
    """One pass: settle orders left created (``worker.abandon``), then claim a batch of stuck
    orders and reconcile each; one order's failure never stops the rest.

    Claims not reached within half the threshold (at least MIN_PASS_SECONDS; Payrails slow or
    down) are left for a later pass: by then their claim could have run out and another replica
    taken them, which is harmless, since each order is re-locked before it is changed.
    """
    settings = deps.settings
    created = await sweep_created_orders(
        deps.sessions,
        deps.payrails,
        stuck_after=settings.sweeper_stuck_after_seconds,
        unpaid_after=max(
            settings.checkout_session_ttl_seconds, settings.sweeper_stuck_after_seconds
        ),
        limit=settings.sweeper_batch_size,
    )
    claims = await claim_stuck_orders(
        deps.sessions,
        stuck_after=settings.sweeper_stuck_after_seconds,
        limit=settings.sweeper_batch_size,
    )
    deadline = time.monotonic() + max(settings.sweeper_stuck_after_seconds / 2, MIN_PASS_SECONDS)
    repaired: dict[str, OrderStatus] = {}
    failed: list[str] = []
    for claim in claims:
        if time.monotonic() > deadline:
            log.warning("sweeper.pass_cut_short", left=len(claims) - len(repaired) - len(failed))
            break
        with structlog.contextvars.bound_contextvars(
            order_reference=claim.reference, execution_id=claim.execution_id
        ):
            transition = await _sweep_one(deps, claim)
        if transition == "failed":
            failed.append(claim.reference)
        elif transition is not None:
            repaired[claim.reference] = transition.to_status
    operations = await sweep_operations(deps)
    resent = await resend_commands(deps)
    due = await flag_capture_due(
        deps.sessions, warning_after=settings.authorization_capture_warning_seconds
    )
    return SweepResult(
        claims,
        {**created.repaired, **repaired},
        tuple(failed),
        tuple(created.abandoned),
        tuple(created.deferred),
        operations,
        resent,
        due,
    )


async def _sweep_one(deps: Deps, claim: Claim) -> Transition | Literal["failed"] | None:
    """Reconcile one claim with its metrics and logs; "failed" if it could not be done."""
    try:
        transition = await reconcile_claim(deps.sessions, deps.payrails, claim)
    except ReconError as exc:  # Payrails refused or did not answer: expected, no traceback
        log.warning("sweeper.order_failed", error=type(exc).__name__, detail=str(exc))
        return "failed"
    except Exception:  # the boundary of one order: log it, go on with the others
        log.exception("sweeper.order_failed")
        return "failed"
    if transition is not None:
        metrics.SWEEPER_REPAIRS.labels(transition.to_status.value).inc()
        log.info(
            "sweeper.repaired",
            from_status=transition.from_status.value,
            to_status=transition.to_status.value,
        )
    return transition


async def run_pass(deps: Deps) -> SweepResult | None:
    """One pass with its metrics and log line; None when the pass itself failed."""
    try:
        result = await sweep_once(deps)
    except Exception:  # the boundary of one pass: the next interval tries again
        log.exception("sweeper.pass_failed")
        metrics.SWEEPER_RUNS.labels("error").inc()
        return None
    metrics.SWEEPER_RUNS.labels("ok").inc()
    if result.claimed or result.abandoned or result.deferred or result.operations or result.resent:
        log.info(
            "sweeper.pass",
            abandoned=len(result.abandoned),
            deferred=len(result.deferred),
            claimed=len(result.claimed),
            repaired=len(result.repaired),
            failed=len(result.failed),
            operations_settled=len(result.operations),
            operations_resent=len(result.resent),
        )
    return result


async def run_sweeper(deps: Deps, stop: asyncio.Event) -> None:
    """Sweep every SWEEPER_INTERVAL_SECONDS until ``stop`` is set."""
    interval = deps.settings.sweeper_interval_seconds
    log.info("sweeper.started", interval_seconds=interval)
    while not stop.is_set():
        await run_pass(deps)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            continue
    log.info("sweeper.stopped")
