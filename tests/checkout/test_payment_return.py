"""The 3-D Secure return page: the challenge's Complete and Fail buttons, then our page."""

from __future__ import annotations

import json
import re
import uuid
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sandbox.control_client import SandboxHandle
from shared.db.models import Order
from shared.money import Money
from shared.payrails.client import PayrailsClient
from shared.payrails.models import ExecutionOutcome
from tests.checkout.conftest import (
    CHALLENGE,
    FRICTIONLESS,
    AuthorizeConsumer,
    order_body,
    order_row,
    outbox_of,
    start_checkout,
    transitions_of,
)
from tests.settings import Settings

Client = TestClient[web.Request, web.Application]
CASCADE = "4000002760003184"


async def challenged_order(checkout: Client, sandbox: SandboxHandle, card: str) -> dict[str, Any]:
    body = await order_body(checkout, sandbox, card)
    answer = await (await checkout.post("/checkout/place-order", json=body)).json()
    assert answer["actionRequired"] == "3ds", answer
    return answer


def posted_message(page: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="threeds-result">(.*?)</script>', page)
    assert match is not None, page
    message: dict[str, Any] = json.loads(match.group(1))
    return message


@pytest.mark.parametrize("card", [CHALLENGE, CASCADE])
async def test_a_completed_challenge_returns_to_a_page_that_reports_authorized(
    card: str,
    checkout: Client,
    checkout_settings: Settings,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    answer = await challenged_order(checkout, sandbox, card)
    location = await sandbox.answer_challenge(answer["executionId"], complete=True)
    expected = f"{checkout_settings.public_base_url}/payment-return/{answer['executionId']}"
    assert location == expected
    response = await checkout.session.get(location, headers={"Accept": "text/html"})
    page = await response.text()
    assert response.status == 200
    assert response.content_type == "text/html"
    assert "Payment authorized" in page
    assert posted_message(page) == {
        "type": "threeds:complete",
        "orderReference": answer["orderReference"],
        "status": "authorized",
        "executionId": answer["executionId"],
        "reason": None,
    }
    assert "target.postMessage(message, window.location.origin)" in page
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in csp
    assert await transitions_of(sessions, answer["orderReference"]) == [
        ("created", "authorizing", "place_order"),
        ("authorizing", "action_required", "poll"),
        ("action_required", "paid", "return"),
    ]
    assert await outbox_of(sessions, answer["orderReference"]) == [
        "order.action_required",
        "order.paid",
    ]


async def test_a_failed_challenge_returns_to_a_page_that_reports_failed(
    checkout: Client, sandbox: SandboxHandle, authorize_consumer: AuthorizeConsumer
) -> None:
    answer = await challenged_order(checkout, sandbox, CHALLENGE)
    location = await sandbox.answer_challenge(answer["executionId"], complete=False)
    response = await checkout.session.get(location)
    page = await response.text()
    assert "Payment failed" in page
    assert "PayerAuthenticationFailed" in page
    assert posted_message(page)["status"] == "failed"
    order = await (await checkout.get(f"/orders/{answer['orderReference']}")).json()
    assert order["status"] == "payment_failed"
    assert order["confirmedBy"] == "return"


async def test_the_return_page_answers_json_when_asked(
    checkout: Client, sandbox: SandboxHandle, authorize_consumer: AuthorizeConsumer
) -> None:
    answer = await challenged_order(checkout, sandbox, CHALLENGE)
    location = await sandbox.answer_challenge(answer["executionId"], complete=True)
    response = await checkout.session.get(location, headers={"Accept": "application/json"})
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert await response.json() == {
        "type": "threeds:complete",
        "orderReference": answer["orderReference"],
        "status": "authorized",
        "executionId": answer["executionId"],
        "reason": None,
    }


async def test_a_return_for_an_execution_authorized_at_another_amount_goes_to_review(
    checkout: Client,
    sandbox: SandboxHandle,
    payrails: PayrailsClient,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The checkout's own poll compares the authorized amount with the order's, as the worker."""
    reference = await start_checkout(checkout, value="129.90", customer="customer-1")
    execution = await payrails.create_execution(
        merchant_reference=reference,
        holder_reference="customer-1",
        meta={},
        idempotency_key=uuid.uuid4(),
    )
    async with sessions.begin() as session:
        await session.execute(
            update(Order)
            .where(Order.reference == reference)
            .values(execution_id=execution.id, status="authorizing")
        )
    init = await payrails.client_init(
        holder_reference="customer-1", init_type="secureFields", idempotency_key=uuid.uuid4()
    )
    await payrails.authorize(
        execution.id,
        amount=Money(Decimal("0.01"), "EUR"),
        payment_instrument_id=await sandbox.tokenize(init, FRICTIONLESS),
        payment_method_code="card",
        return_url="http://shop.example/return",
        idempotency_key=uuid.uuid4(),
    )
    decided = await payrails.get_execution(
        execution.id, wait_while=["created", "authorizeRequested"], timeout=5
    )
    assert decided.outcome is ExecutionOutcome.SUCCEEDED
    response = await checkout.get(
        f"/payment-return/{execution.id}", headers={"Accept": "application/json"}
    )
    answer = await response.json()
    mismatch = "authorized amount 0.01 EUR differs from the order's 129.90 EUR"
    assert response.status == 200, answer
    assert (answer["status"], answer["reason"]) == ("processing", mismatch)
    order = await order_row(sessions, reference)
    assert (order.status, order.failure_reason) == ("needs_review", mismatch)
    assert await transitions_of(sessions, reference) == [("authorizing", "needs_review", "return")]
    assert await outbox_of(sessions, reference) == ["order.needs_review"]


async def test_an_unknown_execution_id_is_not_found(checkout: Client) -> None:
    await start_checkout(checkout)
    response = await checkout.get(
        "/payment-return/no-such-execution", headers={"Accept": "application/json"}
    )
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


async def test_an_unknown_order_reference_is_not_found(checkout: Client) -> None:
    await start_checkout(checkout)
    response = await checkout.get("/orders/no-such-order")
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"
