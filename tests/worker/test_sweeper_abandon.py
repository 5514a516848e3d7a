"""The sweeper abandons an order left ``created`` only once Payrails shows no authorize for it.

Other tests of the run share the database, so each test looks only at its own orders.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sandbox.control_client import SandboxHandle
from shared.db.models import Order
from shared.money import Money
from shared.order_store import ensure_idempotency_key, utcnow
from shared.payrails.client import PayrailsClient
from tests.worker.conftest import FRICTIONLESS, new_reference, order_status, transitions_of
from worker.abandon import (
    ABANDONED,
    UNCONFIRMED,
    UNREADABLE,
    expire_unpaid_and_claim_started,
    settle_claim,
)
from worker.deps import Deps
from worker.sweeper import sweep_once

# Far past the age of anything another test leaves waiting.
STUCK_AFTER = timedelta(days=30)
AMOUNT = Money(Decimal("12.50"), "EUR")


@pytest.fixture
def sweeper_deps(sandbox_deps: Deps) -> Deps:
    settings = sandbox_deps.settings.model_copy(
        update={"sweeper_stuck_after_seconds": STUCK_AFTER.total_seconds()}
    )
    return dataclasses.replace(sandbox_deps, settings=settings)


@dataclasses.dataclass
class StartedOrders:
    """Orders whose place-order began (instrument and execution stored) but are still created."""

    payrails: PayrailsClient
    sandbox: SandboxHandle
    sessions: async_sessionmaker[AsyncSession]

    async def left_created(
        self, *, execution_id: str | None = None, key_stored: bool = False
    ) -> tuple[str, str]:
        """A created order with its execution, its last attempt past the threshold."""
        reference = new_reference()
        if execution_id is None:
            created = await self.payrails.create_execution(
                merchant_reference=reference,
                holder_reference="cust_1",
                meta={},
                idempotency_key=uuid.uuid4(),
            )
            execution_id = created.id
        async with self.sessions.begin() as session:
            order = Order(
                reference=reference,
                customer_reference="cust_1",
                amount_value=AMOUNT.value,
                currency=AMOUNT.currency,
                status="created",
                execution_id=execution_id,
                payment_instrument_id="pi_started",
                payment_method_code="card",
                updated_at=utcnow() - 2 * STUCK_AFTER,
            )
            session.add(order)
            await session.flush()
            if key_stored:
                await ensure_idempotency_key(session, order.id, "authorize")
        return reference, execution_id

    async def authorize_at_payrails(self, execution_id: str, card: str) -> None:
        """An authorize that reached Payrails while the order still reads ``created``."""
        init = await self.payrails.client_init(
            holder_reference="cust_1", init_type="secureFields", idempotency_key=uuid.uuid4()
        )
        await self.payrails.authorize(
            execution_id,
            amount=AMOUNT,
            payment_instrument_id=await self.sandbox.tokenize(init, card),
            payment_method_code="card",
            return_url="http://shop.example/return",
            idempotency_key=uuid.uuid4(),
        )
        await self.payrails.get_execution(
            execution_id, wait_while=["created", "authorizeRequested"]
        )


@pytest.fixture
def started(
    payrails: PayrailsClient, sandbox: SandboxHandle, sessions: async_sessionmaker[AsyncSession]
) -> StartedOrders:
    return StartedOrders(payrails, sandbox, sessions)


async def failure_reason(sessions: async_sessionmaker[AsyncSession], reference: str) -> str | None:
    async with sessions() as session:
        return await session.scalar(
            select(Order.failure_reason).where(Order.reference == reference)
        )


async def test_a_created_order_whose_authorize_reached_payrails_takes_payrails_outcome(
    sweeper_deps: Deps, started: StartedOrders, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference, execution_id = await started.left_created()
    await started.authorize_at_payrails(execution_id, FRICTIONLESS)

    result = await sweep_once(sweeper_deps)

    assert reference not in result.abandoned
    assert result.repaired.get(reference) == "paid"
    assert await order_status(sessions, reference) == "paid"
    assert [
        (t.from_status, t.to_status, t.cause) for t in await transitions_of(sessions, reference)
    ] == [("created", "paid", "sweep")]


async def test_a_created_order_is_left_created_while_payrails_does_not_answer(
    sweeper_deps: Deps,
    started: StartedOrders,
    sandbox: SandboxHandle,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference, _ = await started.left_created()
    await sandbox.set_faults({"endpoints": {"get_execution": {"error_rate": 1}}})

    result = await sweep_once(sweeper_deps)

    assert reference not in result.abandoned
    assert reference in result.deferred
    assert await order_status(sessions, reference) == "created"


async def test_a_created_order_whose_execution_payrails_cannot_show_goes_to_review(
    sweeper_deps: Deps, started: StartedOrders, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference, _ = await started.left_created(execution_id="exec_unknown_to_payrails")

    result = await sweep_once(sweeper_deps)

    assert reference not in result.abandoned
    assert result.repaired.get(reference) == "needs_review"
    assert await failure_reason(sessions, reference) == UNREADABLE


async def test_a_created_order_with_an_authorize_key_stored_goes_to_review_not_failed(
    sweeper_deps: Deps, started: StartedOrders, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference, _ = await started.left_created(key_stored=True)

    result = await sweep_once(sweeper_deps)

    assert reference not in result.abandoned
    assert result.repaired.get(reference) == "needs_review"
    assert await failure_reason(sessions, reference) == UNCONFIRMED


async def test_a_created_order_payrails_shows_without_any_authorize_is_abandoned(
    sweeper_deps: Deps, started: StartedOrders, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference, _ = await started.left_created()

    result = await sweep_once(sweeper_deps)

    assert reference in result.abandoned
    assert await order_status(sessions, reference) == "payment_failed"
    assert await failure_reason(sessions, reference) == ABANDONED


async def test_a_place_order_attempt_after_the_claim_keeps_the_order_created(
    sweeper_deps: Deps, started: StartedOrders, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference, _ = await started.left_created()
    _, _, claims = await expire_unpaid_and_claim_started(
        sessions, stuck_after=STUCK_AFTER.total_seconds(), unpaid_after=1e9, limit=50
    )
    (claim,) = [c for c in claims if c.reference == reference]
    async with sessions.begin() as session:  # the shopper clicks again meanwhile
        await session.execute(
            update(Order).where(Order.reference == reference).values(updated_at=utcnow())
        )

    transition = await settle_claim(sessions, sweeper_deps.payrails, claim)

    assert transition is None
    assert await order_status(sessions, reference) == "created"
