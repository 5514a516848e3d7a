"""An order the checkout's own poll pays is booked with its payment, as the worker's would be."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sandbox.control_client import SandboxHandle
from shared.db.models import Order, OutboxMessage
from tests.checkout.conftest import (
    FRICTIONLESS,
    AuthorizeConsumer,
    order_body,
    order_row,
    transitions_of,
)

Client = TestClient[web.Request, web.Application]


async def test_order_paid_by_the_checkout_poll_carries_the_payment_and_fills_the_row(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    response = await checkout.post("/checkout/place-order", json=body)
    assert response.status == 200, await response.text()
    reference = body["orderReference"]
    assert (await transitions_of(sessions, reference))[-1] == ("authorizing", "paid", "poll")

    async with sessions() as session:
        message = await session.scalar(
            select(OutboxMessage.body)
            .join(Order, Order.id == OutboxMessage.order_id)
            .where(Order.reference == reference, OutboxMessage.routing_key == "order.paid")
        )
    order = await order_row(sessions, reference)
    assert message is not None
    assert message["payment"] == {
        "paymentId": order.payrails_payment_id,
        "pspReference": order.psp_reference,
        "paymentMethodCode": "card",
        "card": {"network": "visa", "last4": "4242"},
        "threeDSecure": {"outcome": "authenticated_frictionless"},
        "resultCode": "Success",
    }
    assert order.payrails_payment_id is not None
    assert order.psp_reference is not None
