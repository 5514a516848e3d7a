"""What goes to needs_review after a poll: another amount than the order's, or a webhook
saying the outcome is unknown while the execution reads failed."""

from __future__ import annotations

import copy
import uuid
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import Order
from shared.money import Money
from shared.payrails.models import ExecutionOutcome
from tests.waiting import wait_until
from tests.worker.conftest import (
    DECLINE,
    FRICTIONLESS,
    QueueDriver,
    Shop,
    insert_order,
    new_reference,
    order_status,
    processed_since,
    running_worker,
    total_processed,
    transitions_of,
)
from worker.deps import Deps
from worker.sweeper import Claim, reconcile_claim


async def authorized(shop: Shop, card: str, *, order_amount: str, amount: str) -> tuple[str, str]:
    """An authorizing order of ``order_amount`` EUR whose execution is authorized for ``amount``.

    Waits until the sandbox has decided; (order reference, execution id).
    """
    reference = new_reference()
    execution = await shop.payrails.create_execution(
        merchant_reference=reference,
        holder_reference="cust_1",
        meta={},
        idempotency_key=uuid.uuid4(),
    )
    await insert_order(
        shop.sessions, execution_id=execution.id, reference=reference, amount=order_amount
    )
    init = await shop.payrails.client_init(
        holder_reference="cust_1", init_type="secureFields", idempotency_key=uuid.uuid4()
    )
    await shop.payrails.authorize(
        execution.id,
        amount=Money(Decimal(amount), "EUR"),
        payment_instrument_id=await shop.sandbox.tokenize(init, card),
        payment_method_code="card",
        return_url="http://shop.example/return",
        idempotency_key=uuid.uuid4(),
    )
    decided = await shop.payrails.get_execution(
        execution.id, wait_while=["created", "authorizeRequested"], timeout=5
    )
    assert decided.outcome in (ExecutionOutcome.SUCCEEDED, ExecutionOutcome.FAILED)
    return reference, execution.id


async def failure_reason(sessions: async_sessionmaker[AsyncSession], reference: str) -> str | None:
    async with sessions() as session:
        return await session.scalar(
            select(Order.failure_reason).where(Order.reference == reference)
        )


async def order_id(sessions: async_sessionmaker[AsyncSession], reference: str) -> int:
    async with sessions() as session:
        found = await session.scalar(select(Order.id).where(Order.reference == reference))
    assert found is not None
    return found


MISMATCH = "authorized amount 0.01 EUR differs from the order's 129.90 EUR"


async def test_a_webhook_for_another_amount_than_the_orders_goes_to_review(
    shop: Shop, sandbox_deps: Deps, broker: QueueDriver, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference, execution_id = await authorized(
        shop, FRICTIONLESS, order_amount="129.90", amount="0.01"
    )
    [completed] = await shop.bodies(execution_id, 1)
    before = total_processed()

    async with running_worker(sandbox_deps):
        await broker.publish_event(completed)
        await wait_until(processed_since(before, 1))
        messages = await broker.settled_messages_for(sessions, {reference})

    assert await order_status(sessions, reference) == "needs_review"
    assert await failure_reason(sessions, reference) == MISMATCH
    assert [m["_routing_key"] for m in messages] == ["order.needs_review"]
    assert messages[0]["reason"] == MISMATCH


async def test_the_sweeper_sends_another_amount_than_the_orders_to_review(
    shop: Shop, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference, execution_id = await authorized(
        shop, FRICTIONLESS, order_amount="129.90", amount="0.01"
    )
    claim = Claim(await order_id(sessions, reference), reference, execution_id)

    transition = await reconcile_claim(sessions, shop.payrails, claim)

    assert transition is not None
    assert (transition.to_status, transition.reason) == ("needs_review", MISMATCH)
    [recorded] = await transitions_of(sessions, reference)
    assert recorded.cause == "sweep"


async def test_the_orders_own_amount_is_paid(
    shop: Shop, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference, execution_id = await authorized(
        shop, FRICTIONLESS, order_amount="129.90", amount="129.90"
    )
    claim = Claim(await order_id(sessions, reference), reference, execution_id)

    transition = await reconcile_claim(sessions, shop.payrails, claim)

    assert transition is not None
    assert transition.to_status == "paid"


async def test_a_webhook_saying_unknown_outranks_a_poll_saying_failed(
    shop: Shop, sandbox_deps: Deps, broker: QueueDriver, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Two declined orders; only the one whose webhook reported ProviderTimeout goes to review."""
    unknown_ref, unknown_exec = await authorized(
        shop, DECLINE, order_amount="12.50", amount="12.50"
    )
    declined_ref, declined_exec = await authorized(
        shop, DECLINE, order_amount="12.50", amount="12.50"
    )
    [reported] = await shop.bodies(unknown_exec, 1)
    reported = copy.deepcopy(reported)
    reported["details"]["paymentComposition"][0]["operationResult"] = "ProviderTimeout"
    [declined] = await shop.bodies(declined_exec, 1)
    before = total_processed()

    async with running_worker(sandbox_deps):
        await broker.publish_event(reported)
        await broker.publish_event(declined)
        await wait_until(processed_since(before, 2))
        messages = await broker.settled_messages_for(sessions, {unknown_ref, declined_ref})

    polled = await shop.payrails.get_execution(unknown_exec)
    assert polled.outcome is ExecutionOutcome.FAILED  # the poll alone would say payment_failed
    assert await order_status(sessions, unknown_ref) == "needs_review"
    assert await failure_reason(sessions, unknown_ref) == "ProviderTimeout"
    assert await order_status(sessions, declined_ref) == "payment_failed"
    keys = {m["orderReference"]: m["_routing_key"] for m in messages}
    assert keys == {unknown_ref: "order.needs_review", declined_ref: "order.payment_failed"}
