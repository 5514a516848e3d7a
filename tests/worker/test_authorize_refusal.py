"""A refused authorize: a failed payment when nothing can have moved, else review.

A made-up or another holder's instrument id is refused outright: the order is
``payment_failed`` with the reason, and nobody is paged. An answer that does not prove nothing
moved (the execution was authorized already, say) still goes to ``needs_review``.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.commands import AuthorizeCommand
from shared.db.models import Order
from shared.money import Money
from shared.payrails.models import ExecutionOutcome
from tests.waiting import wait_until
from tests.worker.conftest import (
    FRICTIONLESS,
    QueueDriver,
    Shop,
    new_reference,
    order_status,
    running_worker,
    transitions_of,
)
from tests.worker.test_unknown_outcome import authorize_commands, publish_command, running_authorize
from worker.deps import Deps

REFUSED = "authorize refused: request.validation-error"


async def tokenized(shop: Shop, holder: str, card: str = FRICTIONLESS) -> str:
    init = await shop.payrails.client_init(
        holder_reference=holder, init_type="secureFields", idempotency_key=uuid.uuid4()
    )
    return await shop.sandbox.tokenize(init, card)


async def authorizing_order(shop: Shop, instrument: str, execution_id: str | None = None) -> str:
    """An authorizing order of customer ``cust_1`` holding ``instrument``; its reference."""
    reference = new_reference()
    if execution_id is None:
        execution = await shop.payrails.create_execution(
            merchant_reference=reference,
            holder_reference="cust_1",
            meta={},
            idempotency_key=uuid.uuid4(),
        )
        execution_id = execution.id
    async with shop.sessions.begin() as session:
        session.add(
            Order(
                reference=reference,
                customer_reference="cust_1",
                amount_value=Decimal("12.50"),
                currency="EUR",
                status="authorizing",
                execution_id=execution_id,
                payment_instrument_id=instrument,
                payment_method_code="card",
            )
        )
    return reference


async def failure_reason(sessions: async_sessionmaker[AsyncSession], reference: str) -> str | None:
    async with sessions() as session:
        return await session.scalar(
            select(Order.failure_reason).where(Order.reference == reference)
        )


async def run_command(
    shop: Shop,
    deps: Deps,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
    reference: str,
    outcome: str,
) -> list[str]:
    """Authorize the order through the consumer; the routing keys of its order messages."""
    async with sessions() as session:
        execution_id = await session.scalar(
            select(Order.execution_id).where(Order.reference == reference)
        )
    assert execution_id is not None
    command = AuthorizeCommand(reference, execution_id)
    before = authorize_commands(outcome)
    async with running_worker(deps), running_authorize(deps):
        await publish_command(broker, command)

        async def finished() -> bool:
            return authorize_commands(outcome) == before + 1

        await wait_until(finished)
        messages = await broker.settled_messages_for(sessions, {reference})
    return [m["_routing_key"] for m in messages]


async def test_an_instrument_payrails_never_issued_fails_the_payment_without_review(
    shop: Shop, sandbox_deps: Deps, broker: QueueDriver, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference = await authorizing_order(shop, "pi_made_up_by_a_shopper")

    routing_keys = await run_command(shop, sandbox_deps, broker, sessions, reference, "refused")

    assert await order_status(sessions, reference) == "payment_failed"
    assert await failure_reason(sessions, reference) == REFUSED
    [transition] = await transitions_of(sessions, reference)
    assert (transition.to_status, transition.cause) == ("payment_failed", "authorize")
    assert routing_keys == ["order.payment_failed"]  # no order.needs_review
    assert (await shop.sandbox.stats())["authorizesExecuted"] == {}


async def test_another_holders_instrument_fails_the_payment_without_review(
    shop: Shop, sandbox_deps: Deps, broker: QueueDriver, sessions: async_sessionmaker[AsyncSession]
) -> None:
    foreign = await tokenized(shop, holder="someone-else")
    reference = await authorizing_order(shop, foreign)

    routing_keys = await run_command(shop, sandbox_deps, broker, sessions, reference, "refused")

    assert await order_status(sessions, reference) == "payment_failed"
    assert await failure_reason(sessions, reference) == REFUSED
    assert routing_keys == ["order.payment_failed"]
    assert (await shop.sandbox.stats())["authorizesExecuted"] == {}


async def test_an_authorize_not_allowed_because_the_execution_is_authorized_goes_to_review(
    shop: Shop, sandbox_deps: Deps, broker: QueueDriver, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A 400 ``workflow.action.not-allowed`` does not prove nothing moved: here money did."""
    instrument = await tokenized(shop, holder="cust_1")
    execution = await shop.payrails.create_execution(
        merchant_reference=new_reference(),
        holder_reference="cust_1",
        meta={},
        idempotency_key=uuid.uuid4(),
    )
    await shop.payrails.authorize(
        execution.id,
        amount=Money(Decimal("12.50"), "EUR"),
        payment_instrument_id=instrument,
        payment_method_code="card",
        return_url="http://shop.example/return",
        idempotency_key=uuid.uuid4(),  # not the order's key: someone else authorized it
    )
    done = await shop.payrails.get_execution(
        execution.id, wait_while=["created", "authorizeRequested"], timeout=5
    )
    assert done.outcome is ExecutionOutcome.SUCCEEDED
    reference = await authorizing_order(shop, instrument, execution_id=execution.id)

    routing_keys = await run_command(shop, sandbox_deps, broker, sessions, reference, "rejected")

    assert await order_status(sessions, reference) == "needs_review"
    reason = await failure_reason(sessions, reference)
    assert reason == "authorize outcome unknown: workflow.action.not-allowed"
    assert routing_keys == ["order.needs_review"]
