"""Order reads for the checkout, and recording what a poll or return page observed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import Order, OrderTransition
from shared.money import Money
from shared.order_store import apply_observation, lock_order, order_money
from shared.payrails.models import Execution
from shared.state_machine import Cause, Observation, OrderStatus, Transition


@dataclass(frozen=True, slots=True)
class OrderView:
    """What the storefront may see of one order."""

    reference: str
    status: OrderStatus
    execution_id: str | None
    amount: Money
    threeds_url: str | None
    failure_reason: str | None
    updated_at: datetime
    confirmed_by: str | None

    @property
    def shopper_status(self) -> str:
        """The seed's words: ``authorized``, ``failed``, else ``processing``."""
        if self.status is OrderStatus.PAID:
            return "authorized"
        if self.status is OrderStatus.PAYMENT_FAILED:
            return "failed"
        return "processing"

    def to_json(self) -> dict[str, Any]:
        """The GET /orders/{reference} body."""
        action = self.status is OrderStatus.ACTION_REQUIRED and self.threeds_url is not None
        return {
            "orderReference": self.reference,
            "status": self.status.value,
            "executionId": self.execution_id,
            "amount": self.amount.to_json(),
            "actionRequired": "3ds" if action else None,
            "redirectUrl": self.threeds_url if action else None,
            "failureReason": self.failure_reason,
            "confirmedBy": self.confirmed_by,
            "updatedAt": self.updated_at.isoformat(),
        }


async def _confirmed_by(session: AsyncSession, order: Order) -> str | None:
    """The cause of the transition into the order's current state."""
    return await session.scalar(
        select(OrderTransition.cause)
        .where(OrderTransition.order_id == order.id, OrderTransition.to_status == order.status)
        .order_by(OrderTransition.id.desc())
        .limit(1)
    )


async def _view(session: AsyncSession, order: Order) -> OrderView:
    return OrderView(
        reference=order.reference,
        status=order.status,
        execution_id=order.execution_id,
        amount=order_money(order),
        threeds_url=order.threeds_url,
        failure_reason=order.failure_reason,
        updated_at=order.updated_at,
        confirmed_by=await _confirmed_by(session, order),
    )


async def view_by_reference(
    sessions: async_sessionmaker[AsyncSession], reference: str
) -> OrderView | None:
    return await _view_where(sessions, Order.reference == reference)


async def view_by_execution(
    sessions: async_sessionmaker[AsyncSession], execution_id: str
) -> OrderView | None:
    return await _view_where(sessions, Order.execution_id == execution_id)


async def _view_where(
    sessions: async_sessionmaker[AsyncSession], condition: ColumnElement[bool]
) -> OrderView | None:
    async with sessions.begin() as session:
        order = await session.scalar(select(Order).where(condition))
        return None if order is None else await _view(session, order)


async def record_execution(
    sessions: async_sessionmaker[AsyncSession], execution: Execution, cause: Cause
) -> Transition | None:
    """Feed an execution read from Payrails through the state machine, under the row lock."""
    async with sessions.begin() as session:
        order = await lock_order(session, execution_id=execution.id)
        if order is None:
            return None
        detail = {"executionStatus": execution.latest_code}
        observed = Observation.from_execution(execution, order_money(order))
        return await apply_observation(session, order, observed, cause, detail=detail)
