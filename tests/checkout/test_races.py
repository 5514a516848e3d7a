"""The webhook and the place-order poll race; the order ends the same whichever comes first."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ingress.checkout.keys import CHECKOUT
from ingress.checkout.order_views import record_execution
from ingress.checkout.place_order import ensure_execution, start_authorize, take_order
from ingress.checkout.validation import PlaceOrderRequest, parse_place_order
from sandbox.control_client import SandboxHandle
from shared.db.models import Order
from shared.events import WebhookEvent
from shared.payrails.client import PayrailsClient
from shared.payrails.models import Execution
from shared.state_machine import Cause
from tests.checkout.conftest import (
    FRICTIONLESS,
    AuthorizeConsumer,
    bound_session,
    order_body,
    outbox_of,
    transitions_of,
)
from worker.events import Delivery, reconcile_batch

Client = TestClient[web.Request, web.Application]


def completed_webhook(execution: Execution, reference: str) -> WebhookEvent:
    body = {
        "event": "executionActionCompleted",
        "time": datetime.now(UTC).isoformat(),
        "details": {
            "action": "authorize",
            "actionId": str(uuid.uuid4()),
            "success": True,
            "execution": {"id": execution.id, "merchantReference": reference},
        },
    }
    return WebhookEvent.from_body(json.dumps(body).encode())


async def reconcile_webhook(
    sessions: async_sessionmaker[AsyncSession], execution: Execution, reference: str
) -> None:
    """What the events worker does with the webhook, with the execution it re-polled."""
    delivery = Delivery(completed_webhook(execution, reference), execution=execution)
    async with sessions.begin() as session:
        await reconcile_batch(session, [delivery])


async def authorized_execution(
    checkout: Client, sandbox: SandboxHandle, payrails: PayrailsClient
) -> tuple[str, Execution]:
    """An order whose authorize Payrails has done, before anything has observed the result."""
    parsed = parse_place_order(await order_body(checkout, sandbox, FRICTIONLESS))
    assert isinstance(parsed, PlaceOrderRequest)
    service = checkout.server.app[CHECKOUT]
    order = await take_order(service, await bound_session(checkout), parsed)
    execution_id = await ensure_execution(service, order)
    assert await start_authorize(service, order.id, execution_id)
    execution = await payrails.get_execution(
        execution_id, wait_while=["created", "authorizeRequested"], timeout=5
    )
    assert execution.is_terminal
    return order.reference, execution


@pytest.mark.parametrize("first", ["webhook", "poll"])
async def test_whichever_of_webhook_and_poll_comes_first_the_order_is_paid_once(
    first: str,
    checkout: Client,
    sandbox: SandboxHandle,
    payrails: PayrailsClient,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference, execution = await authorized_execution(checkout, sandbox, payrails)
    if first == "webhook":
        await reconcile_webhook(sessions, execution, reference)
        assert await record_execution(sessions, execution, Cause.POLL) is None
    else:
        assert await record_execution(sessions, execution, Cause.POLL) is not None
        await reconcile_webhook(sessions, execution, reference)
    assert await transitions_of(sessions, reference) == [
        ("created", "authorizing", "place_order"),
        ("authorizing", "paid", first),
    ]
    assert await outbox_of(sessions, reference) == ["order.paid"]
    order = await (await checkout.get(f"/orders/{reference}")).json()
    assert order["status"] == "paid"
    assert order["confirmedBy"] == first


async def test_a_webhook_and_a_poll_applied_at_once_pay_the_order_once(
    checkout: Client,
    sandbox: SandboxHandle,
    payrails: PayrailsClient,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference, execution = await authorized_execution(checkout, sandbox, payrails)
    await asyncio.gather(
        reconcile_webhook(sessions, execution, reference),
        record_execution(sessions, execution, Cause.POLL),
    )
    into_paid = [t for t in await transitions_of(sessions, reference) if t[1] == "paid"]
    assert len(into_paid) == 1
    assert await outbox_of(sessions, reference) == ["order.paid"]


async def test_place_order_answers_authorized_when_the_webhook_already_paid_the_order(
    checkout: Client,
    sandbox: SandboxHandle,
    payrails: PayrailsClient,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference, execution = await authorized_execution(checkout, sandbox, payrails)
    await reconcile_webhook(sessions, execution, reference)
    async with sessions() as session:
        order = await session.scalar(select(Order).where(Order.reference == reference))
        assert order is not None
    body = {
        "paymentInstrumentId": order.payment_instrument_id,
        "paymentMethodCode": "card",
        "amount": {"value": "129.90", "currency": "EUR"},
        "orderReference": reference,
        "customerReference": "customer-1",
    }
    response = await checkout.post("/checkout/place-order", json=body)
    assert (await response.json())["status"] == "authorized"
    assert await outbox_of(sessions, reference) == ["order.paid"]
