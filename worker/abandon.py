"""Orders left ``created``: expire the unpaid ones, abandon a payment only once Payrails agrees.

An order stays ``created`` until an authorize command for it is queued (the checkout's
place-order) or handled (the authorize consumer commits ``authorizing`` before it calls Payrails).
The sweeper ends two kinds of such orders:

- an order the merchant created that no shopper has paid (no instrument) within its checkout
  session's lifetime (CHECKOUT_SESSION_TTL_SECONDS) expires as ``payment_failed``;
- an order whose place-order began (it has an instrument) but whose last place-order attempt is
  older than SWEEPER_STUCK_AFTER_SECONDS. Every attempt restarts that clock, so a shopper still
  retrying through a broker outage is not abandoned under them.

Before such an order is called "authorization never started", its execution is looked up at
Payrails (a plain GET, with no transaction open). Only an execution that shows no authorize at
all, for an order with no authorize key stored, is abandoned as ``payment_failed``. Otherwise:

- Payrails reports an outcome (authorized, declined, a 3-D Secure challenge, an unknown result):
  the order takes it, as from any other re-poll;
- Payrails shows an authorize still pending, or none although an authorize key is stored (the
  authorize may be on its way): the outcome is unknown, so the order goes to ``needs_review``,
  which no authorize command ever acts on again;
- Payrails does not answer: the order is left for a later pass;
- Payrails answers with an error (the execution cannot be read): ``needs_review``.

Claiming works as the sweeper's claim of stuck orders does: one short transaction takes the
orders ``FOR UPDATE SKIP LOCKED`` and stamps their ``updated_at`` with the database's clock, so
a replica sweeping at the same moment skips them. Each order is then re-locked and changed only
if it is still ``created`` and nothing touched it since the stamp (a place-order attempt would).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import metrics
from shared.db.models import Order
from shared.errors import InvalidPayload
from shared.order_store import apply_observation, lock_order, order_money
from shared.payment_attempts import authorize_key
from shared.payrails.client import PayrailsClient
from shared.payrails.errors import PayrailsError, PayrailsTransientError
from shared.payrails.models import Execution, ExecutionOutcome
from shared.state_machine import Cause, Observation, OrderStatus, Transition

log = structlog.get_logger(__name__)

ABANDONED = "abandoned: authorization never started"
EXPIRED = "expired: never paid"
UNCONFIRMED = "authorize not confirmed by Payrails"
UNREADABLE = "authorize outcome unknown: the execution could not be read"


@dataclass(frozen=True, slots=True)
class PaymentClaim:
    """A started order left ``created``, taken by this sweeper to be checked at Payrails."""

    order_id: int
    reference: str
    execution_id: str
    stamp: datetime  # the updated_at the claim wrote; a later attempt changes it


@dataclass(slots=True)
class CreatedResult:
    """What one pass did with ``created`` orders: references by what became of them."""

    abandoned: list[str] = field(default_factory=list)
    repaired: dict[str, OrderStatus] = field(default_factory=dict)
    deferred: list[str] = field(default_factory=list)  # Payrails did not answer


def authorize_never_reached(execution: Execution) -> bool:
    """Payrails shows no authorize at all for the execution: it is still just created."""
    return (
        execution.outcome is ExecutionOutcome.PENDING
        and execution.latest_code in (None, "created")
        and not any(entry.code.startswith("authorize") for entry in execution.statuses)
    )


def created_observation(execution: Execution, order: Order, *, key_stored: bool) -> Observation:
    """What an order still ``created`` becomes, given its execution at Payrails.

    ``payment_failed`` (abandoned) only when Payrails shows no authorize and none can be on its
    way; Payrails' outcome when it reports one; ``needs_review`` for anything in between.
    """
    if authorize_never_reached(execution):
        if key_stored:
            return Observation(OrderStatus.NEEDS_REVIEW, reason=UNCONFIRMED)
        return Observation(OrderStatus.PAYMENT_FAILED, reason=ABANDONED)
    observed = Observation.from_execution(execution, order_money(order))
    if observed.status is OrderStatus.AUTHORIZING:
        # An authorize Payrails is still deciding, that this order never recorded: unknown.
        reason = f"authorize outcome unknown: Payrails shows {execution.latest_code}"
        return Observation(OrderStatus.NEEDS_REVIEW, reason=reason)
    return observed


async def expire_unpaid_and_claim_started(
    sessions: async_sessionmaker[AsyncSession],
    *,
    stuck_after: float,
    unpaid_after: float,
    limit: int,
) -> tuple[list[str], list[str], list[PaymentClaim]]:
    """Up to ``limit`` orders left ``created`` too long, in one transaction: expire the unpaid
    ones, abandon started ones that have no execution (no authorize can exist without one), and
    claim the others for a look at Payrails. Returns (expired, abandoned, claims)."""
    now = func.now()
    started = Order.payment_instrument_id.is_not(None)
    stale = (
        select(Order)
        .where(
            Order.status == OrderStatus.CREATED,
            or_(
                and_(started, Order.updated_at < now - timedelta(seconds=stuck_after)),
                and_(~started, Order.updated_at < now - timedelta(seconds=unpaid_after)),
            ),
        )
        .order_by(Order.updated_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    expired: list[str] = []
    abandoned: list[str] = []
    claimed: list[Order] = []
    async with sessions.begin() as session:
        for order in (await session.scalars(stale)).all():
            if order.payment_instrument_id is not None and order.execution_id is not None:
                claimed.append(order)
                continue
            failed = abandoned if order.payment_instrument_id else expired
            reason = ABANDONED if order.payment_instrument_id else EXPIRED
            observed = Observation(OrderStatus.PAYMENT_FAILED, reason=reason)
            if await apply_observation(session, order, observed, Cause.SWEEP) is not None:
                failed.append(order.reference)
        claims: list[PaymentClaim] = []
        if claimed:
            stamp = await session.scalar(select(now))
            assert stamp is not None
            await session.execute(
                update(Order)
                .where(Order.id.in_([o.id for o in claimed]))
                .values(updated_at=stamp)
                .execution_options(synchronize_session=False)
            )
            claims = [
                PaymentClaim(o.id, o.reference, o.execution_id, stamp)
                for o in claimed
                if o.execution_id is not None
            ]
    return expired, abandoned, claims


async def settle_claim(
    sessions: async_sessionmaker[AsyncSession], payrails: PayrailsClient, claim: PaymentClaim
) -> Transition | None:
    """Look the claim's execution up at Payrails and apply what it shows; the transition, or
    None when the order was left as it was. Raises PayrailsTransientError when Payrails did not
    answer."""
    execution: Execution | None
    try:
        execution = await payrails.get_execution(claim.execution_id)
    except PayrailsTransientError:
        raise
    except (PayrailsError, InvalidPayload) as exc:
        log.warning("sweeper.execution_unreadable", error=repr(exc))
        execution = None
    async with sessions.begin() as session:
        order = await lock_order(session, order_id=claim.order_id)
        if order is None or order.status is not OrderStatus.CREATED:
            return None  # an authorize command got there first
        if order.updated_at != claim.stamp:
            return None  # a place-order attempt since the claim: the shopper is still there
        if execution is None:
            observed = Observation(OrderStatus.NEEDS_REVIEW, reason=UNREADABLE)
        else:
            key_stored = await authorize_key(session, order) is not None
            observed = created_observation(execution, order, key_stored=key_stored)
        detail = {} if execution is None else {"execution_status": execution.latest_code}
        return await apply_observation(session, order, observed, Cause.SWEEP, detail=detail)


async def sweep_created_orders(
    sessions: async_sessionmaker[AsyncSession],
    payrails: PayrailsClient,
    *,
    stuck_after: float,
    unpaid_after: float,
    limit: int,
) -> CreatedResult:
    """One pass over orders left ``created``; see the module's docstring."""
    expired, abandoned, claims = await expire_unpaid_and_claim_started(
        sessions, stuck_after=stuck_after, unpaid_after=unpaid_after, limit=limit
    )
    result = CreatedResult(abandoned=[*expired, *abandoned])
    for claim in claims:
        with structlog.contextvars.bound_contextvars(
            order_reference=claim.reference, execution_id=claim.execution_id
        ):
            try:
                transition = await settle_claim(sessions, payrails, claim)
            except PayrailsTransientError as exc:
                log.warning("sweeper.abandon_deferred", error=repr(exc))
                result.deferred.append(claim.reference)
                continue
            except Exception:  # the boundary of one order: log it, go on with the others
                log.exception("sweeper.abandon_failed")
                result.deferred.append(claim.reference)
                continue
            if transition is None:
                log.info("sweeper.abandon_skipped")
            elif transition.reason == ABANDONED:
                result.abandoned.append(claim.reference)
            else:
                status = transition.to_status
                result.repaired[claim.reference] = status
                metrics.SWEEPER_REPAIRS.labels(status.value).inc()
                log.warning(
                    "sweeper.created_order_repaired",
                    to_status=status.value,
                    reason=transition.reason,
                )
    for reference in result.abandoned:
        metrics.SWEEPER_REPAIRS.labels(OrderStatus.PAYMENT_FAILED.value).inc()
        log.info("sweeper.abandoned", order_reference=reference)
    return result
