"""What the books need reaches the order's row and its order.paid / order.payment_failed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import Order, OrderTransition, OutboxMessage
from shared.payrails.client import PayrailsClient
from tests.waiting import wait_until
from tests.worker.conftest import (
    CASCADE,
    CHALLENGE,
    DECLINE,
    FRICTIONLESS,
    QueueDriver,
    Shop,
    order_status,
    running_worker,
)
from tests.worker.test_asyncapi import check
from worker.deps import Deps

pytestmark = pytest.mark.usefixtures("webhook_ingress")
CARDS = (FRICTIONLESS, CHALLENGE, DECLINE, CASCADE)


async def reaches(sessions: async_sessionmaker[AsyncSession], reference: str, status: str) -> None:
    async def there() -> bool:
        return await order_status(sessions, reference) == status

    await wait_until(there)


async def paid_with(
    shop: Shop,
    deps: Deps,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
    card: str,
) -> tuple[str, str, dict[str, Any]]:
    """Pay with ``card`` (completing a challenge); (reference, execution id, final message)."""
    async with running_worker(deps):
        reference, execution_id = await shop.pay(card)
        if card in (CHALLENGE, CASCADE):
            await reaches(sessions, reference, "action_required")
            await shop.sandbox.answer_challenge(execution_id, complete=True)
        final = "payment_failed" if card == DECLINE else "paid"
        await reaches(sessions, reference, final)
        messages = await broker.settled_messages_for(sessions, {reference})
    return reference, execution_id, messages[-1]


async def approved_payment(payrails: PayrailsClient, execution_id: str) -> dict[str, Any]:
    execution = await payrails.get_execution(execution_id)
    payments = [p for p in execution.raw["payments"] if p["operationResult"] == "Success"]
    return dict(payments[-1])


async def order_row(sessions: async_sessionmaker[AsyncSession], reference: str) -> Order:
    async with sessions() as session:
        order = await session.scalar(select(Order).where(Order.reference == reference))
    assert order is not None
    return order


@pytest.mark.parametrize("shape", ["documented", "seed"])
async def test_frictionless_order_paid_carries_the_payment_and_the_row_keeps_it(
    shape: str,
    shop: Shop,
    sandbox_deps: Deps,
    payrails: PayrailsClient,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await shop.sandbox.set_config(status_shape=shape)

    reference, execution_id, message = await paid_with(
        shop, sandbox_deps, broker, sessions, FRICTIONLESS
    )

    approved = await approved_payment(payrails, execution_id)
    expected = {
        "paymentId": approved["paymentId"],
        "pspReference": approved["pspReference"],
        "paymentMethodCode": "card",
        "card": {"network": "visa", "last4": "4242"},
        "threeDSecure": {"outcome": "authenticated_frictionless"},
        "resultCode": "Success",
    }
    assert message["_routing_key"] == "order.paid"
    assert message["payment"] == expected
    order = await order_row(sessions, reference)
    assert (
        order.payrails_payment_id,
        order.psp_reference,
        order.payment_method_code,
        order.card_network,
        order.card_last4,
        order.threeds_outcome,
    ) == (
        approved["paymentId"],
        approved["pspReference"],
        "card",
        "visa",
        "4242",
        "authenticated_frictionless",
    )


async def test_a_challenged_card_is_booked_with_the_challenge_outcome(
    shop: Shop,
    sandbox_deps: Deps,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference, _, message = await paid_with(shop, sandbox_deps, broker, sessions, CHALLENGE)

    assert message["_routing_key"] == "order.paid"
    assert message["payment"]["threeDSecure"] == {"outcome": "authenticated_challenge"}
    assert message["payment"]["card"] == {"network": "visa", "last4": "3220"}
    assert (await order_row(sessions, reference)).threeds_outcome == "authenticated_challenge"


async def test_a_cascade_books_the_fallback_psps_approval(
    shop: Shop,
    sandbox_deps: Deps,
    payrails: PayrailsClient,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference, execution_id, message = await paid_with(
        shop, sandbox_deps, broker, sessions, CASCADE
    )

    approved = await approved_payment(payrails, execution_id)
    assert approved["providerId"] == "sandbox-psp-secondary"
    assert message["payment"]["paymentId"] == approved["paymentId"]
    assert message["payment"]["pspReference"] == approved["pspReference"]
    assert (await order_row(sessions, reference)).psp_reference == approved["pspReference"]


async def test_order_payment_failed_carries_the_declined_payment_and_its_result_code(
    shop: Shop,
    sandbox_deps: Deps,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference, _, message = await paid_with(shop, sandbox_deps, broker, sessions, DECLINE)

    assert message["_routing_key"] == "order.payment_failed"
    payment = message["payment"]
    assert (payment["resultCode"], payment["card"]) == (
        "InsufficientBalance",
        {"network": "visa", "last4": "9995"},
    )
    assert "threeDSecure" not in payment
    async with sessions() as session:
        details = list(
            await session.scalars(
                select(OrderTransition.detail)
                .join(Order, Order.id == OrderTransition.order_id)
                .where(Order.reference == reference, OrderTransition.to_status == "payment_failed")
            )
        )
    assert [d["resultCode"] for d in details] == ["InsufficientBalance"]


@pytest.mark.parametrize("card", CARDS)
async def test_published_payment_validates_and_never_holds_the_card_number(
    card: str,
    shop: Shop,
    sandbox_deps: Deps,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference, _, message = await paid_with(shop, sandbox_deps, broker, sessions, card)

    body = {k: v for k, v in message.items() if not k.startswith("_")}
    assert check(body) == []
    async with sessions() as session:
        stored = list(
            await session.scalars(
                select(OutboxMessage.body)
                .join(Order, Order.id == OutboxMessage.order_id)
                .where(Order.reference == reference)
            )
        )
    order = await order_row(sessions, reference)
    kept = json.dumps(stored) + json.dumps(message) + repr(order.__dict__)
    assert card not in kept
    assert card[-4:] in kept
