"""Orders the way the checkout leaves them, paid in the sandbox, and made to look stuck."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sandbox.control_client import SandboxHandle
from shared.db.models import Order, OrderTransition
from shared.money import Money
from shared.order_store import ensure_idempotency_key
from shared.payrails.client import PayrailsClient

APPROVE = "4242 4242 4242 4242"
CHALLENGE = "4000 0000 0000 3220"
PRE_AUTHORIZE = ("created", "authorizeRequested")
# Far older than anything another test leaves behind, so only this test's orders look stuck.
STUCK_AFTER = timedelta(days=30)


@dataclass
class Shop:
    """Pays with a test card in the sandbox and keeps the order the way the checkout would."""

    payrails: PayrailsClient
    sandbox: SandboxHandle
    sessions: async_sessionmaker[AsyncSession]

    async def unpaid(self, status: str, *, execution: bool = True) -> tuple[str, str | None]:
        """An order whose authorize never reached Payrails, with its authorize key stored."""
        reference = f"ops_{uuid.uuid4().hex[:16]}"
        execution_id: str | None = None
        if execution:
            created = await self.payrails.create_execution(
                merchant_reference=reference,
                holder_reference="cust_ops",
                meta={},
                idempotency_key=uuid.uuid4(),
            )
            execution_id = created.id
        async with self.sessions.begin() as session:
            order = Order(
                reference=reference,
                customer_reference="cust_ops",
                amount_value=Decimal("12.50"),
                currency="EUR",
                status=status,
                execution_id=execution_id,
                payment_instrument_id="pi_ops",
                payment_method_code="card",
            )
            session.add(order)
            await session.flush()
            await ensure_idempotency_key(session, order.id, "authorize")
        return reference, execution_id

    async def pay(self, card: str, *, status: str = "authorizing") -> tuple[str, str]:
        """Create execution and order, authorize, wait until Payrails decided; (ref, exec id)."""
        reference = f"ops_{uuid.uuid4().hex[:16]}"
        execution = await self.payrails.create_execution(
            merchant_reference=reference,
            holder_reference="cust_ops",
            meta={},
            idempotency_key=uuid.uuid4(),
        )
        async with self.sessions.begin() as session:
            session.add(
                Order(
                    reference=reference,
                    customer_reference="cust_ops",
                    amount_value=Decimal("12.50"),
                    currency="EUR",
                    status=status,
                    execution_id=execution.id,
                )
            )
        init = await self.payrails.client_init(
            holder_reference="cust_ops", init_type="secureFields", idempotency_key=uuid.uuid4()
        )
        await self.payrails.authorize(
            execution.id,
            amount=Money(Decimal("12.50"), "EUR"),
            payment_instrument_id=await self.sandbox.tokenize(init, card),
            payment_method_code="card",
            return_url="https://shop.example/return",
            idempotency_key=uuid.uuid4(),
        )
        await self.payrails.get_execution(execution.id, wait_while=PRE_AUTHORIZE)
        return reference, execution.id


async def make_stuck(
    sessions: async_sessionmaker[AsyncSession], references: Sequence[str], *, opened: int = 0
) -> None:
    """Backdate the orders' last change past the sweeper's threshold, and their creation by
    ``opened`` thresholds."""
    async with sessions.begin() as session:
        await session.execute(
            update(Order)
            .where(Order.reference.in_(list(references)))
            .values(
                updated_at=Order.updated_at - 2 * STUCK_AFTER,
                created_at=Order.created_at - opened * STUCK_AFTER,
            )
        )


async def order_status(sessions: async_sessionmaker[AsyncSession], reference: str) -> str:
    async with sessions() as session:
        status = await session.scalar(select(Order.status).where(Order.reference == reference))
    assert status is not None
    return status


async def transitions_of(
    sessions: async_sessionmaker[AsyncSession], reference: str
) -> list[tuple[str, str, str]]:
    """(from, to, cause) of every transition of the order, oldest first."""
    async with sessions() as session:
        rows = await session.execute(
            select(OrderTransition.from_status, OrderTransition.to_status, OrderTransition.cause)
            .join(Order, Order.id == OrderTransition.order_id)
            .where(Order.reference == reference)
            .order_by(OrderTransition.id)
        )
        return [(row[0], row[1], row[2]) for row in rows]
