"""Retry after a decline: another card pays the same order, in its own attempt, at most once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ingress.checkout.keys import CHECKOUT
from ingress.checkout.order_views import record_execution
from ingress.checkout.place_order import ensure_execution, start_authorize
from ingress.checkout.service import PaymentInFlight
from sandbox.control_client import SandboxHandle
from shared.db.models import Order, OutboxMessage, PaymentAttempt
from shared.order_store import utcnow
from shared.payrails.client import PayrailsClient
from shared.state_machine import Cause
from tests.checkout.conftest import (
    CHALLENGE,
    DECLINE,
    FRICTIONLESS,
    AuthorizeConsumer,
    idempotency_operations,
    order_body,
    order_row,
    tokenize,
)
from tests.settings import Settings

Client = TestClient[web.Request, web.Application]
PROBLEM = "application/problem+json"


async def another_card(
    checkout: Client, sandbox: SandboxHandle, body: dict[str, Any], card: str
) -> dict[str, Any]:
    """The same place-order body with a newly tokenized card, as the storefront sends it."""
    return {**body, "paymentInstrumentId": await tokenize(checkout, sandbox, card)}


async def place(checkout: Client, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = await checkout.post("/checkout/place-order", json=body)
    answer: dict[str, Any] = await response.json()
    return response.status, answer


async def messages_of(
    sessions: async_sessionmaker[AsyncSession], reference: str
) -> list[tuple[str, int, str | None]]:
    """(routing key, attempt, execution id) of each message the order announced, in order."""
    async with sessions() as session:
        rows = await session.scalars(
            select(OutboxMessage)
            .join(Order, Order.id == OutboxMessage.order_id)
            .where(Order.reference == reference)
            .order_by(OutboxMessage.id)
        )
        return [(m.routing_key, m.body["attempt"], m.body["executionId"]) for m in rows]


async def test_two_declines_then_a_good_card_pay_the_same_order_once(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    body = await order_body(checkout, sandbox, DECLINE)
    reference = body["orderReference"]
    executions: list[str] = []
    for card in (DECLINE, DECLINE, FRICTIONLESS):
        attempt_body = body if not executions else await another_card(checkout, sandbox, body, card)
        status, answer = await place(checkout, attempt_body)
        assert status == 200, answer
        assert answer["orderReference"] == reference
        executions.append(answer["executionId"])
        expected = "authorized" if card == FRICTIONLESS else "failed"
        assert answer["status"] == expected, answer

    assert len(set(executions)) == 3  # each attempt is its own execution
    assert await messages_of(sessions, reference) == [
        ("order.payment_failed", 1, executions[0]),
        ("order.payment_failed", 2, executions[1]),
        ("order.paid", 3, executions[2]),
    ]
    stats = await sandbox.stats()
    assert stats["executionsCreated"] == 3
    assert stats["authorizesExecuted"] == {execution: 1 for execution in executions}
    assert await idempotency_operations(sessions, reference) == [
        "create_execution",
        "authorize",
        "create_execution:2",
        "authorize:2",
        "create_execution:3",
        "authorize:3",
    ]
    row = await order_row(sessions, reference)
    assert (row.status, row.attempt, row.execution_id) == ("paid", 3, executions[2])
    async with sessions() as session:
        earlier = await session.execute(
            select(
                PaymentAttempt.attempt, PaymentAttempt.execution_id, PaymentAttempt.failure_reason
            )
            .where(PaymentAttempt.order_id == row.id)
            .order_by(PaymentAttempt.attempt)
        )
        assert [tuple(r) for r in earlier] == [
            (1, executions[0], "InsufficientBalance"),
            (2, executions[1], "InsufficientBalance"),
        ]


async def test_another_card_while_the_first_awaits_3ds_is_refused_with_409(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    body = await order_body(checkout, sandbox, CHALLENGE)
    status, first = await place(checkout, body)
    assert (status, first.get("actionRequired")) == (200, "3ds"), first

    response = await checkout.post(
        "/checkout/place-order", json=await another_card(checkout, sandbox, body, FRICTIONLESS)
    )
    answer = await response.json()
    assert response.status == 409, answer
    assert response.content_type == PROBLEM
    assert (answer["error"], answer["status"]) == ("payment_in_flight", 409)
    assert answer["orderStatus"] == "action_required"
    assert answer["orderReference"] == body["orderReference"]
    row = await order_row(sessions, body["orderReference"])
    assert (row.status, row.attempt, row.payment_instrument_id) == (
        "action_required",
        1,
        body["paymentInstrumentId"],
    )
    stats = await sandbox.stats()
    assert stats["executionsCreated"] == 1
    assert stats["authorizesExecuted"] == {first["executionId"]: 1}


async def test_another_card_after_the_order_is_paid_is_refused_with_409(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    status, first = await place(checkout, body)
    assert (status, first["status"]) == (200, "authorized"), first

    response = await checkout.post(
        "/checkout/place-order", json=await another_card(checkout, sandbox, body, FRICTIONLESS)
    )
    answer = await response.json()
    assert response.status == 409, answer
    assert response.content_type == PROBLEM
    assert answer["error"] == "order_already_paid"
    assert await messages_of(sessions, body["orderReference"]) == [
        ("order.paid", 1, first["executionId"])
    ]
    assert (await sandbox.stats())["authorizesExecuted"] == {first["executionId"]: 1}


async def test_a_declined_order_past_its_retry_window_takes_no_other_card(
    checkout: Client,
    checkout_settings: Settings,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    body = await order_body(checkout, sandbox, DECLINE)
    status, first = await place(checkout, body)
    assert (status, first["status"]) == (200, "failed"), first
    window = timedelta(seconds=checkout_settings.payment_retry_window_seconds)
    async with sessions.begin() as session:
        await session.execute(
            update(Order)
            .where(Order.reference == body["orderReference"])
            .values(created_at=utcnow() - window)
        )

    response = await checkout.post(
        "/checkout/place-order", json=await another_card(checkout, sandbox, body, FRICTIONLESS)
    )
    answer = await response.json()
    assert response.status == 409, answer
    assert answer["error"] == "order_expired"
    row = await order_row(sessions, body["orderReference"])
    assert (row.status, row.attempt) == ("payment_failed", 1)
    assert (await sandbox.stats())["executionsCreated"] == 1


async def test_the_declined_card_again_answers_the_decline_without_a_new_attempt(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The same body again is the same request retried: it reads the attempt's outcome."""
    body = await order_body(checkout, sandbox, DECLINE)
    status, first = await place(checkout, body)
    assert (status, first["status"]) == (200, "failed"), first
    again_status, again = await place(checkout, body)
    assert (again_status, again) == (200, first)
    assert (await order_row(sessions, body["orderReference"])).attempt == 1
    assert (await sandbox.stats())["executionsCreated"] == 1


async def test_a_late_poll_of_the_declined_attempt_leaves_the_paid_order_paid(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
    payrails: PayrailsClient,
) -> None:
    """The first attempt's execution, read from Payrails after the second paid, moves nothing."""
    body = await order_body(checkout, sandbox, DECLINE)
    _, declined = await place(checkout, body)
    status, paid = await place(checkout, await another_card(checkout, sandbox, body, FRICTIONLESS))
    assert (status, paid["status"]) == (200, "authorized"), paid

    late = await payrails.get_execution(declined["executionId"])
    assert await record_execution(sessions, late, Cause.POLL) is None
    row = await order_row(sessions, body["orderReference"])
    assert (row.status, row.attempt, row.execution_id) == ("paid", 2, paid["executionId"])
    assert [key for key, _, _ in await messages_of(sessions, body["orderReference"])] == [
        "order.payment_failed",
        "order.paid",
    ]


async def test_a_request_holding_the_declined_attempts_execution_cannot_start_the_next_one(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    body = await order_body(checkout, sandbox, DECLINE)
    status, first = await place(checkout, body)
    assert (status, first["status"]) == (200, "failed"), first
    declined = await order_row(sessions, body["orderReference"])
    assert declined.execution_id is not None
    async with sessions.begin() as session:  # another request has begun attempt 2 meanwhile
        await session.execute(
            update(Order)
            .where(Order.id == declined.id)
            .values(status="created", attempt=2, execution_id="exec-of-attempt-2")
        )

    started = await start_authorize(
        checkout.server.app[CHECKOUT], declined.id, declined.execution_id
    )

    assert started is False
    row = await order_row(sessions, body["orderReference"])
    assert (row.status, row.attempt, row.execution_id) == ("created", 2, "exec-of-attempt-2")


async def test_a_request_whose_attempt_was_superseded_meanwhile_gets_409_not_500(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    body = await order_body(checkout, sandbox, DECLINE)
    status, first = await place(checkout, body)
    assert (status, first["status"]) == (200, "failed"), first
    declined = await order_row(sessions, body["orderReference"])
    async with sessions.begin() as session:  # the attempt this request read, without execution
        await session.execute(
            update(Order).where(Order.id == declined.id).values(status="created", execution_id=None)
        )
    stale = await order_row(sessions, body["orderReference"])
    async with sessions.begin() as session:  # meanwhile another request begins the next one
        await session.execute(update(Order).where(Order.id == declined.id).values(attempt=3))

    with pytest.raises(PaymentInFlight):
        await ensure_execution(checkout.server.app[CHECKOUT], stale)
