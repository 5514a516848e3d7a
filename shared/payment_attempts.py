"""Payment attempts: after a decline, the shopper pays the same order again with another card.

Each attempt is its own Payrails execution with its own stored idempotency keys. The order holds
its current attempt (``Order.attempt`` and ``Order.execution_id``); starting the next one writes
the replaced attempt's execution to ``payment_attempts``, so a late webhook or poll of it still
finds its order and changes nothing (``shared.state_machine.decide_attempt``). Only a declined
order starts a new attempt (``shared.state_machine.new_attempt``), and only until the retry
window after the order's creation has passed: the order is paid at most once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import IdempotencyKey, Order, PaymentAttempt
from shared.order_store import record_transition
from shared.state_machine import Cause, Transition, new_attempt


def attempt_operation(operation: str, attempt: int) -> str:
    """The idempotency-key operation of ``operation`` in ``attempt``.

    The first attempt keeps the plain name (the keys stored before attempts existed); a later
    one gets its own keys, so Payrails sees a new execution and a new authorize.
    """
    return operation if attempt <= 1 else f"{operation}:{attempt}"


AUTHORIZE_OPERATION = "authorize"


async def stored_key(session: AsyncSession, order_id: int, operation: str) -> IdempotencyKey | None:
    """The key stored for (order, operation), if any."""
    return await session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.order_id == order_id, IdempotencyKey.operation == operation
        )
    )


async def authorize_key(session: AsyncSession, order: Order) -> IdempotencyKey | None:
    """The current attempt's authorize key, if it was stored."""
    return await stored_key(
        session, order.id, attempt_operation(AUTHORIZE_OPERATION, order.attempt)
    )


def retry_window_closed(order: Order, now: datetime, window_seconds: float) -> bool:
    """Whether ``order`` is too old to start another payment attempt."""
    return now >= order.created_at + timedelta(seconds=window_seconds)


async def start_new_attempt(
    session: AsyncSession, order: Order, cause: Cause = Cause.PLACE_ORDER
) -> Transition | None:
    """Move a locked, declined order to its next attempt; None when it is not declined. No commit.

    The replaced attempt's execution and decline reason go to ``payment_attempts``; the order
    goes back to ``created`` without an execution, which the next place-order creates with the
    new attempt's keys.
    """
    transition = new_attempt(order.status)
    if transition is None:
        return None
    session.add(
        PaymentAttempt(
            order_id=order.id,
            attempt=order.attempt,
            execution_id=order.execution_id,
            failure_reason=order.failure_reason,
        )
    )
    previous = order.attempt
    order.attempt = previous + 1
    order.execution_id = None
    order.failure_reason = None
    detail = {"attempt": order.attempt, "previousAttempt": previous}
    await record_transition(session, order, transition, cause, detail=detail)
    return transition


async def earlier_attempts(session: AsyncSession, execution_ids: Iterable[str]) -> dict[str, str]:
    """Which of ``execution_ids`` belong to a replaced attempt: execution id -> order reference."""
    ids = sorted(set(execution_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(PaymentAttempt.execution_id, Order.reference)
        .join(Order, Order.id == PaymentAttempt.order_id)
        .where(PaymentAttempt.execution_id.in_(ids))
    )
    return {execution_id: reference for execution_id, reference in rows if execution_id}
