"""Authorizations not captured in time: flagged before the card scheme lets them expire.

An authorization holds the shopper's money only for a while (card schemes typically release it
after about seven days); a merchant on manual capture who has not captured by then loses the
sale. Each sweeper pass looks for ``paid`` orders in the manual capture mode authorized longer
than ``AUTHORIZATION_CAPTURE_WARNING_SECONDS`` ago (the time of their move to ``paid``) whose
money picture still has an amount neither captured nor being captured, with capturing not closed
(no final capture) and no cancel succeeded or under way.

Each such order is announced once: an ``order.capture_due`` message (docs/asyncapi.yaml), whose
stable id is derived from the order, is written to the outbox under the order's row lock, and
the ``sweeper.capture_due`` warning is logged only by the pass that wrote it. The outbox row is
the marker, so replicas sweeping at once and later passes announce nothing again. Every pass
sets ``recon_authorizations_near_expiry`` to the number of such orders it found, so the gauge
falls as they are captured or cancelled. Nothing is ever captured or cancelled automatically.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import metrics
from shared.db.models import Order, OrderTransition, OutboxMessage
from shared.money import Money
from shared.money_picture import MoneyPicture
from shared.operation_messages import money_message
from shared.operation_states import PENDING_STATES, CaptureMode, OperationKind
from shared.operation_store import operations_of, picture_of
from shared.order_store import lock_order, utcnow, write_outbox_message
from shared.state_machine import OrderStatus

log = structlog.get_logger(__name__)

ROUTING_CAPTURE_DUE = "order.capture_due"
# Orders looked at per pass, oldest authorization first; the rest wait for the next pass.
MAX_ORDERS_PER_PASS = 1000


@dataclass(frozen=True, slots=True)
class CaptureDue:
    """A manual-capture order whose authorization is near expiry, and what is left to capture."""

    reference: str
    authorized_at: datetime
    uncaptured: Money
    announced: bool  # this pass wrote its order.capture_due (False: announced before)


def capture_due_message_id(reference: str) -> str:
    """Stable per order: its capture is announced due at most once."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"recon:order:{reference}:capture_due"))


def uncaptured(picture: MoneyPicture) -> Decimal:
    """What is authorized and neither captured nor being captured; 0 once capturing is over.

    Capturing is over after a final capture (succeeded or under way) and after a cancel that
    succeeded or is under way.
    """
    if picture.capture_closed or picture.cancelled:
        return Decimal(0)
    if picture.of(OperationKind.CANCEL, *PENDING_STATES):
        return Decimal(0)
    left = picture.authorized - picture.captured - picture.pending(OperationKind.CAPTURE)
    return max(left, Decimal(0))


async def authorized_before(
    sessions: async_sessionmaker[AsyncSession], *, older_than: float, limit: int
) -> list[tuple[int, datetime]]:
    """Paid manual-capture orders with something left to capture, authorized over
    ``older_than`` seconds ago (the database's clock): (order id, time of the move to paid)."""
    paid_at = (
        select(OrderTransition.order_id, func.min(OrderTransition.created_at).label("at"))
        .where(OrderTransition.to_status == OrderStatus.PAID)
        .group_by(OrderTransition.order_id)
        .subquery()
    )
    query = (
        select(Order.id, paid_at.c.at)
        .join(paid_at, paid_at.c.order_id == Order.id)
        .where(
            Order.status == OrderStatus.PAID,
            Order.capture_mode == CaptureMode.MANUAL,
            Order.captured_value < Order.amount_value,
            paid_at.c.at < func.now() - timedelta(seconds=older_than),
        )
        .order_by(paid_at.c.at)
        .limit(limit)
    )
    async with sessions() as session:
        return [(order_id, at) for order_id, at in (await session.execute(query)).all()]


def capture_due_body(
    order: Order, picture: MoneyPicture, authorized_at: datetime, left: Decimal, message_id: str
) -> dict[str, Any]:
    return {
        **money_message(order, picture, ROUTING_CAPTURE_DUE, message_id),
        "uncaptured": Money(left, order.currency).to_json(),
        "authorizedAt": authorized_at.isoformat(),
        "cause": "sweep",
        "occurredAt": utcnow().isoformat(),
    }


async def _flag(session: AsyncSession, order_id: int, authorized_at: datetime) -> CaptureDue | None:
    """Announce one order's capture as due, once; None when nothing is left to capture."""
    order = await lock_order(session, order_id=order_id)
    if order is None or order.status is not OrderStatus.PAID:
        return None
    picture = picture_of(order, await operations_of(session, order.id))
    left = uncaptured(picture)
    if order.capture_mode is not CaptureMode.MANUAL or left <= 0:
        return None
    message_id = capture_due_message_id(order.reference)
    sent = await session.scalar(
        select(OutboxMessage.id).where(OutboxMessage.message_id == message_id)
    )
    if sent is None:
        body = capture_due_body(order, picture, authorized_at, left, message_id)
        await write_outbox_message(
            session,
            order_id=order.id,
            routing_key=ROUTING_CAPTURE_DUE,
            message_id=message_id,
            body=body,
        )
    return CaptureDue(order.reference, authorized_at, picture.money(left), sent is None)


async def flag_capture_due(
    sessions: async_sessionmaker[AsyncSession], *, warning_after: float
) -> tuple[CaptureDue, ...]:
    """One pass: every order whose capture is due, each announced (and logged) once; sets
    ``recon_authorizations_near_expiry``."""
    candidates = await authorized_before(
        sessions, older_than=warning_after, limit=MAX_ORDERS_PER_PASS
    )
    found: list[CaptureDue] = []
    for order_id, authorized_at in candidates:
        async with sessions.begin() as session:
            due = await _flag(session, order_id, authorized_at)
        if due is None:
            continue
        found.append(due)
        if due.announced:
            log.warning(
                "sweeper.capture_due",
                order_reference=due.reference,
                authorized_at=authorized_at.isoformat(),
                uncaptured=due.uncaptured.format_value(),
                currency=due.uncaptured.currency,
            )
    metrics.AUTHORIZATIONS_NEAR_EXPIRY.set(len(found))
    return tuple(found)
