"""Checkout answers for bad requests and for Payrails being unreachable."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ingress.checkout.validation import DROP_IN_EXPLANATION, SAFE_ALPHABET
from ingress.checkout_app import create_checkout_app
from ingress.keys import BROKER
from sandbox.control_client import SandboxHandle
from shared.db.models import IdempotencyKey, Order
from shared.messaging import Names
from shared.money import MAX_INTEGER_DIGITS
from tests.checkout.conftest import (
    FRICTIONLESS,
    AuthorizeConsumer,
    client_init_answers,
    idempotency_operations,
    order_body,
    order_row,
    session_header,
    session_token,
    start_checkout,
)
from tests.ports import free_port
from tests.settings import Settings
from tests.waiting import sample

Client = TestClient[web.Request, web.Application]


def requests_counted(endpoint: str, outcome: str) -> float:
    return sample("recon_checkout_requests_total", endpoint=endpoint, outcome=outcome)


def durations_observed(endpoint: str, outcome: str) -> tuple[float, float]:
    """(count, sum) of the checkout latency histogram under the endpoint and outcome."""
    labels = {"endpoint": endpoint, "outcome": outcome}
    count = sample("recon_checkout_request_seconds_count", **labels)
    return count, sample("recon_checkout_request_seconds_sum", **labels)


@pytest.mark.parametrize(
    ("body", "status", "outcome", "other"),
    [
        pytest.param(
            {"holderReference": "customer/1", "type": "secureFields"},
            422,
            "invalid",
            "ok",
            id="422-validation-refusal",
        ),
        pytest.param(
            {"holderReference": "customer-1", "type": "tokenization"},
            200,
            "ok",
            "invalid",
            id="200-answered",
        ),
    ],
)
async def test_a_request_duration_is_observed_under_its_endpoint_and_outcome(
    body: dict[str, str], status: int, outcome: str, other: str, checkout: Client
) -> None:
    await start_checkout(checkout)
    count, total = durations_observed("payments_init", outcome)
    other_count, _ = durations_observed("payments_init", other)
    response = await checkout.post("/payments/init", json=body)
    assert response.status == status, await response.text()
    observed_count, observed_total = durations_observed("payments_init", outcome)
    assert observed_count == count + 1
    assert observed_total > total
    assert durations_observed("payments_init", other)[0] == other_count


async def test_an_invalid_place_order_answers_422_with_an_error_per_field(
    checkout: Client,
) -> None:
    await start_checkout(checkout)
    before = requests_counted("place_order", "invalid")
    body = {
        "paymentInstrumentId": "pi_1",
        "amount": {"value": "10.5", "currency": "EUR"},
        "orderReference": "o" * 65,
        "customerReference": "customer 1",
    }
    response = await checkout.post("/checkout/place-order", json=body)
    answer = await response.json()
    assert response.status == 422
    assert answer["error"] == "validation_failed"
    assert {e["field"] for e in answer["errors"]} == {
        "paymentMethodCode",
        "amount.value",
        "orderReference",
        "customerReference",
    }
    assert requests_counted("place_order", "invalid") == before + 1


async def test_an_amount_too_large_for_the_order_table_answers_422_on_amount_value(
    checkout: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference = await start_checkout(checkout)
    body = {
        "paymentInstrumentId": "pi_1",
        "paymentMethodCode": "card",
        "amount": {"value": "1000000000000000.00", "currency": "EUR"},
        "orderReference": reference,
        "customerReference": "customer-1",
    }
    response = await checkout.post("/checkout/place-order", json=body)
    answer = await response.json()
    assert response.status == 422, answer
    assert answer["errors"] == [
        {
            "field": "amount.value",
            "message": f"must have at most {MAX_INTEGER_DIGITS} digits before the decimal point",
        }
    ]
    order = await order_row(sessions, reference)
    assert (order.status, order.amount_value) == ("created", Decimal("129.90"))
    assert await idempotency_operations(sessions, reference) == []


async def test_a_body_that_is_not_json_answers_400(checkout: Client) -> None:
    await start_checkout(checkout)
    response = await checkout.post(
        "/checkout/place-order", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_json"


async def test_init_refuses_drop_in_with_an_explanation(checkout: Client) -> None:
    await start_checkout(checkout)
    response = await checkout.post(
        "/payments/init", json={"holderReference": "customer-1", "type": "dropIn"}
    )
    assert response.status == 422
    assert (await response.json())["errors"] == [{"field": "type", "message": DROP_IN_EXPLANATION}]


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        pytest.param(
            {"holderReference": "c" * 65, "type": "secureFields"},
            [{"field": "holderReference", "message": "must be at most 64 characters"}],
            id="holder-too-long",
        ),
        pytest.param(
            {"holderReference": "customer/1", "type": "secureFields"},
            [{"field": "holderReference", "message": SAFE_ALPHABET}],
            id="holder-disallowed-characters",
        ),
        pytest.param(
            ["customer-1", "secureFields"],
            [{"field": "", "message": "the body must be a JSON object"}],
            id="body-not-an-object",
        ),
    ],
)
async def test_an_invalid_init_answers_422_without_calling_payrails(
    body: Any, errors: list[dict[str, str]], checkout: Client, sandbox: SandboxHandle
) -> None:
    await start_checkout(checkout)
    before = requests_counted("payments_init", "invalid")
    response = await checkout.post("/payments/init", json=body)
    answer = await response.json()
    assert response.status == 422, answer
    assert answer["error"] == "validation_failed"
    assert answer["errors"] == errors
    assert requests_counted("payments_init", "invalid") == before + 1
    assert client_init_answers(sandbox) == []


async def test_init_returns_the_payrails_payload_verbatim(
    checkout: Client, sandbox: SandboxHandle
) -> None:
    await start_checkout(checkout)
    response = await checkout.post(
        "/payments/init", json={"holderReference": "customer-1", "type": "tokenization"}
    )
    payload = await response.json()
    assert response.status == 200
    assert client_init_answers(sandbox) == [payload]


async def test_init_answers_503_when_payrails_fails(
    checkout: Client, sandbox: SandboxHandle
) -> None:
    await start_checkout(checkout)
    await sandbox.set_faults({"endpoints": {"client_init": {"error_rate": 1}}})
    response = await checkout.post(
        "/payments/init", json={"holderReference": "customer-1", "type": "secureFields"}
    )
    assert response.status == 503
    assert (await response.json())["error"] == "payrails_unavailable"


async def create_execution_keys(
    sessions: async_sessionmaker[AsyncSession], reference: str
) -> list[Any]:
    async with sessions() as session:
        rows = await session.scalars(
            select(IdempotencyKey.key)
            .join(Order, Order.id == IdempotencyKey.order_id)
            .where(Order.reference == reference, IdempotencyKey.operation == "create_execution")
        )
        return list(rows)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"error_rate": 1, "times": 1}, id="5xx"),
        pytest.param({"drop_response_rate": 1, "times": 1}, id="created-but-answer-lost"),
    ],
)
async def test_payrails_down_answers_503_and_a_retry_completes_the_order(
    fault: dict[str, Any],
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    await sandbox.set_faults({"endpoints": {"create_execution": fault}})
    down = await checkout.post("/checkout/place-order", json=body)
    answer = await down.json()
    assert down.status == 503
    assert answer["error"] == "payrails_unavailable"
    status = await (await checkout.get(f"/orders/{body['orderReference']}")).json()
    assert status["status"] == "created"
    keys = await create_execution_keys(sessions, body["orderReference"])
    assert len(keys) == 1

    retry = await checkout.post("/checkout/place-order", json=body)
    assert retry.status == 200
    assert (await retry.json())["status"] == "authorized"
    assert await create_execution_keys(sessions, body["orderReference"]) == keys
    stats = await sandbox.stats()
    assert stats["executionsCreated"] == 1
    assert sum(stats["authorizesExecuted"].values()) == 1


async def test_payrails_unreachable_answers_503_and_a_retry_completes_the_order(
    checkout: Client,
    checkout_settings: Settings,
    topology: Names,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
) -> None:
    """A second app instance whose Payrails URL refuses connections, then the real one."""
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    unreachable = checkout_settings.model_copy(
        update={
            "payrails_base_url": f"http://127.0.0.1:{free_port()}",
            "checkout_port": free_port(),
        }
    )
    app = create_checkout_app(unreachable)
    server = TestServer(app, host="127.0.0.1", port=unreachable.checkout_port)
    async with TestClient(server) as down:
        assert await app[BROKER].wait_ready(10)
        response = await down.post(
            "/checkout/place-order", json=body, headers=session_header(session_token(checkout))
        )
        answer = await response.json()
    assert response.status == 503
    assert answer["error"] == "payrails_unavailable"
    assert "retry the same request" in answer["message"]
    retry = await checkout.post("/checkout/place-order", json=body)
    assert (await retry.json())["status"] == "authorized"
    assert (await sandbox.stats())["executionsCreated"] == 1
