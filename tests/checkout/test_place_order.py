"""Place-order end to end: the checkout app, the authorize consumer and the sandbox."""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal

from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sandbox.control_client import SandboxHandle
from sandbox.keys import STATE
from shared.db.models import Order
from shared.messaging import Names
from shared.money import MAX_INTEGER_DIGITS
from tests.checkout.conftest import (
    CHALLENGE,
    DECLINE,
    FRICTIONLESS,
    UNKNOWN,
    AuthorizeConsumer,
    DenyAll,
    count_orders,
    idempotency_operations,
    order_body,
    order_row,
    outbox_of,
    serve_checkout,
    session_header,
    session_token,
    transitions_of,
)
from tests.ports import free_port
from tests.settings import Settings
from tests.waiting import sample

Client = TestClient[web.Request, web.Application]


async def created_at_of(sessions: async_sessionmaker[AsyncSession], reference: str) -> datetime:
    async with sessions() as session:
        created = await session.scalar(select(Order.created_at).where(Order.reference == reference))
    assert created is not None
    return created


async def test_a_frictionless_card_is_authorized_in_the_answer(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    response = await checkout.post("/checkout/place-order", json=body)
    answer = await response.json()
    assert response.status == 200, answer
    assert answer["status"] == "authorized"
    assert answer["orderReference"] == body["orderReference"]
    reference = body["orderReference"]
    assert await transitions_of(sessions, reference) == [
        ("created", "authorizing", "place_order"),
        ("authorizing", "paid", "poll"),
    ]
    assert await outbox_of(sessions, reference) == ["order.paid"]
    order = await (await checkout.get(f"/orders/{reference}")).json()
    assert order["status"] == "paid"
    assert order["confirmedBy"] == "poll"
    assert order["executionId"] == answer["executionId"]
    assert order["amount"] == {"value": "129.90", "currency": "EUR"}
    assert order["actionRequired"] is None
    updated_at = datetime.fromisoformat(order["updatedAt"])
    assert updated_at.tzinfo is not None
    assert updated_at >= await created_at_of(sessions, reference)


async def test_the_execution_carries_metadata_only(
    checkout: Client, sandbox: SandboxHandle, authorize_consumer: AuthorizeConsumer
) -> None:
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    answer = await (await checkout.post("/checkout/place-order", json=body)).json()
    execution = sandbox.running.app[STATE].executions[answer["executionId"]]
    assert execution.merchant_reference == body["orderReference"]
    assert execution.holder_reference == "customer-1"
    assert dict(execution.meta) == {
        "order": {"reference": body["orderReference"]},
        "customer": {"reference": "customer-1"},
        "tags": {"channel": "web"},
    }
    stats = await sandbox.stats()
    assert stats["executionsCreated"] == 1
    assert stats["authorizesExecuted"] == {answer["executionId"]: 1}


async def test_a_declined_card_fails_with_the_reason(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    body = await order_body(checkout, sandbox, DECLINE)
    response = await checkout.post("/checkout/place-order", json=body)
    answer = await response.json()
    assert response.status == 200, answer
    assert answer["status"] == "failed"
    assert answer["reason"] == "InsufficientBalance"
    assert await outbox_of(sessions, body["orderReference"]) == ["order.payment_failed"]


async def test_an_unknown_outcome_answers_processing_and_goes_to_review(
    checkout: Client, sandbox: SandboxHandle, authorize_consumer: AuthorizeConsumer
) -> None:
    body = await order_body(checkout, sandbox, UNKNOWN)
    response = await checkout.post("/checkout/place-order", json=body)
    answer = await response.json()
    assert response.status == 202, answer
    assert answer["status"] == "processing"
    order = await (await checkout.get(f"/orders/{body['orderReference']}")).json()
    assert order["status"] == "needs_review"
    assert order["failureReason"] == "ProviderTimeout"


async def test_a_pre_authorize_denial_fails_the_order_without_calling_payrails(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    hook = DenyAll("velocity check failed")
    authorize_consumer.hook = hook
    before = sample("recon_authorize_commands_total", outcome="denied")
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    response = await checkout.post("/checkout/place-order", json=body)
    answer = await response.json()
    assert response.status == 200, answer
    assert answer == {
        "status": "failed",
        "reason": "velocity check failed",
        "executionId": answer["executionId"],
        "orderReference": body["orderReference"],
    }
    assert hook.checked == [body["orderReference"]]
    assert (await sandbox.stats())["authorizesExecuted"] == {}
    assert await transitions_of(sessions, body["orderReference"]) == [
        ("created", "authorizing", "place_order"),
        ("authorizing", "payment_failed", "pre_authorize"),
    ]
    assert sample("recon_authorize_commands_total", outcome="denied") == before + 1


async def test_the_same_body_again_answers_the_current_state_without_a_second_authorize(
    checkout: Client, sandbox: SandboxHandle, authorize_consumer: AuthorizeConsumer
) -> None:
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    first = await (await checkout.post("/checkout/place-order", json=body)).json()
    again = await checkout.post("/checkout/place-order", json=body)
    assert again.status == 200
    assert await again.json() == first
    stats = await sandbox.stats()
    assert stats["executionsCreated"] == 1
    assert stats["authorizesExecuted"] == {first["executionId"]: 1}


async def test_a_different_amount_in_the_body_is_refused_before_anything_is_paid(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The order's terms are the merchant's (see test_merchant_api for the conflict there)."""
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    changed = {**body, "amount": {"value": "1.00", "currency": "EUR"}}
    response = await checkout.post("/checkout/place-order", json=changed)
    answer = await response.json()
    assert response.status == 409, answer
    assert answer["error"] == "amount_mismatch"
    assert answer["amount"] == {"value": "129.90", "currency": "EUR"}
    order = await order_row(sessions, body["orderReference"])
    assert (order.status, order.execution_id) == ("created", None)
    assert order.amount_value == Decimal("129.90")
    assert await idempotency_operations(sessions, body["orderReference"]) == []
    stats = await sandbox.stats()
    assert (stats["executionsCreated"], stats["authorizesExecuted"]) == (0, {})


async def test_ten_concurrent_identical_requests_create_one_execution_and_one_authorize(
    checkout: Client,
    checkout_settings: Settings,
    topology: Names,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """An app that lets one session hold ten long-polls, so all ten race in the database."""
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    roomy = checkout_settings.model_copy(
        update={"checkout_port": free_port(), "checkout_long_polls_per_session": 10}
    )
    headers = session_header(session_token(checkout))
    async with serve_checkout(roomy) as client:
        responses = await asyncio.gather(
            *(client.post("/checkout/place-order", json=body, headers=headers) for _ in range(10))
        )
        answers = [await r.json() for r in responses]
    assert {r.status for r in responses} == {200}
    assert {a["status"] for a in answers} == {"authorized"}
    assert len({a["executionId"] for a in answers}) == 1
    stats = await sandbox.stats()
    assert stats["executionsCreated"] == 1
    assert stats["authorizesExecuted"] == {answers[0]["executionId"]: 1}
    assert await count_orders(sessions, body["orderReference"]) == 1
    assert await outbox_of(sessions, body["orderReference"]) == ["order.paid"]


async def test_a_poll_timeout_answers_processing_and_the_order_is_readable(
    checkout: Client, sandbox: SandboxHandle
) -> None:
    """No authorize consumer runs here, so the execution never leaves ``created``."""
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    response = await checkout.post("/checkout/place-order", json=body)
    answer = await response.json()
    assert response.status == 202, answer
    assert answer == {
        "status": "processing",
        "executionId": answer["executionId"],
        "orderReference": body["orderReference"],
    }
    order = await (await checkout.get(f"/orders/{body['orderReference']}")).json()
    assert order["status"] == "authorizing"
    assert order["confirmedBy"] == "place_order"


async def test_a_challenge_answers_the_redirect_url(
    checkout: Client, sandbox: SandboxHandle, authorize_consumer: AuthorizeConsumer
) -> None:
    body = await order_body(checkout, sandbox, CHALLENGE)
    response = await checkout.post("/checkout/place-order", json=body)
    answer = await response.json()
    assert response.status == 200, answer
    assert answer["actionRequired"] == "3ds"
    assert answer["redirectUrl"] == f"{sandbox.url}/public/3ds/{answer['executionId']}"
    order = await (await checkout.get(f"/orders/{body['orderReference']}")).json()
    assert order["status"] == "action_required"
    assert order["actionRequired"] == "3ds"
    assert order["redirectUrl"] == answer["redirectUrl"]


async def test_the_largest_amount_the_order_table_holds_is_authorized(
    checkout: Client, sandbox: SandboxHandle, authorize_consumer: AuthorizeConsumer
) -> None:
    value = "9" * MAX_INTEGER_DIGITS + ".99"
    body = await order_body(checkout, sandbox, FRICTIONLESS, value=value)
    response = await checkout.post("/checkout/place-order", json=body)
    answer = await response.json()
    assert response.status == 200, answer
    assert answer["status"] == "authorized"
    order = await (await checkout.get(f"/orders/{body['orderReference']}")).json()
    assert order["amount"] == {"value": value, "currency": "EUR"}
