"""Orders already authorized, written to the database as the checkout and worker leave them, and
the payment operations stored for them: what the capture, cancel and refund intake starts from."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import Order, PaymentOperation
from shared.operation_states import CaptureMode, OperationKind, OperationState


def new_reference() -> str:
    return f"ord_{uuid.uuid4().hex[:16]}"


async def insert_paid_order(
    sessions: async_sessionmaker[AsyncSession],
    *,
    amount: str = "100.00",
    currency: str = "EUR",
    capture_mode: CaptureMode = CaptureMode.MANUAL,
    captured: str | None = None,
    status: str = "paid",
) -> str:
    """A paid order (its authorization from checkout); with ``captured``, a succeeded capture."""
    order = Order(
        reference=new_reference(),
        customer_reference="cust_1",
        amount_value=Decimal(amount),
        currency=currency,
        status=status,
        execution_id=str(uuid.uuid4()),
        capture_mode=capture_mode,
    )
    async with sessions.begin() as session:
        session.add(order)
        await session.flush()
        if captured is not None:
            order.captured_value = Decimal(captured)
            session.add(
                PaymentOperation(
                    order_id=order.id,
                    kind=OperationKind.CAPTURE,
                    state=OperationState.SUCCEEDED,
                    amount_value=Decimal(captured),
                    currency=currency,
                    final=False,
                    idempotency_key=uuid.uuid4(),
                )
            )
    return order.reference


async def operations_of(
    sessions: async_sessionmaker[AsyncSession], reference: str
) -> list[PaymentOperation]:
    async with sessions() as session:
        rows = await session.scalars(
            select(PaymentOperation)
            .join(Order, Order.id == PaymentOperation.order_id)
            .where(Order.reference == reference)
            .order_by(PaymentOperation.id)
        )
        return list(rows)


async def settle(
    sessions: async_sessionmaker[AsyncSession], operation_id: str, state: OperationState
) -> None:
    """Move an operation (by its public id) to ``state``, as the worker would after Payrails."""
    async with sessions.begin() as session:
        await session.execute(
            update(PaymentOperation)
            .where(PaymentOperation.idempotency_key == uuid.UUID(operation_id))
            .values(state=state)
        )


async def take_all(
    connection: AbstractRobustConnection, queue: str, *, wait_for: int = 0, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """Every message on ``queue`` (at least ``wait_for`` of them), acked; bodies with their id."""
    out: list[AbstractIncomingMessage] = []
    async with connection.channel() as channel:
        q = await channel.get_queue(queue, ensure=False)
        async with asyncio.timeout(timeout):
            while True:
                while (message := await q.get(fail=False)) is not None:
                    await message.ack()
                    out.append(message)
                if len(out) >= wait_for:
                    break
                await asyncio.sleep(0.05)
    return [{**json.loads(m.body), "_message_id": m.message_id} for m in out]
