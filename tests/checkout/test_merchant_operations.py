"""Capture, cancel and refund over the merchant API: stored once per Idempotency-Key, handed to
the worker with operation.execute, refused by the money rules with nothing stored."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ingress.checkout_app import create_checkout_app
from ingress.keys import BROKER
from sandbox.control_client import SandboxHandle
from shared.messaging import Names
from shared.operation_states import CaptureMode, OperationState
from tests.checkout.conftest import MERCHANT_AUTH, through
from tests.ingress.proxy import TcpProxy
from tests.paid_orders import insert_paid_order, operations_of, settle, take_all
from tests.ports import free_port
from tests.settings import Settings
from tests.waiting import sample

Client = TestClient[web.Request, web.Application]
PROBLEM = "application/problem+json"
PATHS = {"capture": "captures", "cancel": "cancel", "refund": "refunds"}


def key_header(key: str | None = None) -> dict[str, str]:
    return {**MERCHANT_AUTH, "Idempotency-Key": key or str(uuid.uuid4())}


async def ask(
    client: Client,
    reference: str,
    kind: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    response = await client.post(
        f"/merchant/orders/{reference}/{PATHS[kind]}",
        json=body,
        headers=key_header() if headers is None else headers,
    )
    answer = await response.json(content_type=None)
    if response.status >= 400:
        assert response.content_type == PROBLEM, answer
    return response.status, answer


def eur(value: str) -> dict[str, str]:
    return {"value": value, "currency": "EUR"}


async def executes(connection: AbstractRobustConnection, names: Names) -> list[str]:
    """The operation ids sent to the operations queue since the last look."""
    return [m["operationId"] for m in await take_all(connection, names.operations_queue)]


def requested(kind: str, outcome: str) -> float:
    return sample("recon_operations_requested_total", channel="http", kind=kind, outcome=outcome)


def refused(kind: str, reason: str) -> float:
    return sample("recon_operations_refused_total", channel="http", kind=kind, reason=reason)


# --- accepted -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "captured", "body", "amount", "final"),
    [
        pytest.param("capture", None, {"amount": eur("40.00"), "final": False}, "40.00", False),
        pytest.param("capture", None, None, "100.00", True, id="capture-all"),
        pytest.param("cancel", None, None, "100.00", None),
        pytest.param("refund", "60.00", {"amount": eur("25.50")}, "25.50", None),
        pytest.param("refund", "60.00", {}, "60.00", None, id="refund-all"),
    ],
)
async def test_a_request_is_stored_with_its_key_answered_202_and_handed_to_the_worker(
    kind: str,
    captured: str | None,
    body: Any,
    amount: str,
    final: bool | None,
    checkout: Client,
    sessions: async_sessionmaker[AsyncSession],
    amqp_connection: AbstractRobustConnection,
    topology: Names,
) -> None:
    reference = await insert_paid_order(sessions, captured=captured)
    before = requested(kind, "requested")
    status, answer = await ask(checkout, reference, kind, body)
    assert status == 202, answer
    operation = answer["operation"]
    assert (operation["kind"], operation["amount"], operation["state"], operation["final"]) == (
        kind,
        eur(amount),
        "requested",
        final,
    )
    assert answer["orderReference"] == reference
    assert answer["money"] == {
        "currency": "EUR",
        "authorized": "100.00",
        "captured": captured or "0.00",
        "refunded": "0.00",
    }
    rows = [row for row in await operations_of(sessions, reference) if row.kind == kind]
    row = rows[-1]
    assert (str(row.idempotency_key), row.state, row.amount_value) == (
        operation["id"],
        OperationState.REQUESTED,
        Decimal(amount),
    )
    assert await executes(amqp_connection, topology) == [operation["id"]]
    assert requested(kind, "requested") == before + 1


async def test_the_same_key_again_answers_the_same_operation_and_stores_no_other(
    checkout: Client,
    sessions: async_sessionmaker[AsyncSession],
    amqp_connection: AbstractRobustConnection,
    topology: Names,
) -> None:
    reference = await insert_paid_order(sessions)
    headers = key_header()
    body = {"amount": eur("10.00"), "final": False}
    first = await ask(checkout, reference, "capture", body, headers)
    again = await ask(checkout, reference, "capture", body, headers)
    assert (first[0], again[0]) == (202, 202)
    assert again[1]["operation"] == first[1]["operation"]
    assert len(await operations_of(sessions, reference)) == 1
    # still requested: the worker has not taken it on, so it is sent again
    assert await executes(amqp_connection, topology) == [first[1]["operation"]["id"]] * 2


async def test_the_same_key_after_the_worker_took_the_operation_on_sends_nothing_again(
    checkout: Client,
    sessions: async_sessionmaker[AsyncSession],
    amqp_connection: AbstractRobustConnection,
    topology: Names,
) -> None:
    reference = await insert_paid_order(sessions)
    headers = key_header()
    _, first = await ask(checkout, reference, "cancel", None, headers)
    assert await executes(amqp_connection, topology) == [first["operation"]["id"]]
    await settle(sessions, first["operation"]["id"], OperationState.IN_FLIGHT)
    status, again = await ask(checkout, reference, "cancel", None, headers)
    assert status == 202, again
    assert again["operation"]["state"] == "in_flight"
    assert await executes(amqp_connection, topology) == []


@pytest.mark.parametrize(
    ("kind", "other"),
    [
        pytest.param("capture", {"amount": eur("11.00"), "final": False}, id="other-amount"),
        pytest.param("capture", {"amount": eur("10.00"), "final": True}, id="other-final"),
        pytest.param("refund", {"amount": eur("10.00")}, id="other-kind"),
    ],
)
async def test_the_same_key_with_another_request_is_409_command_reused(
    kind: str,
    other: dict[str, Any],
    checkout: Client,
    sessions: async_sessionmaker[AsyncSession],
    topology: Names,
) -> None:
    reference = await insert_paid_order(sessions, captured="20.00")
    headers = key_header()
    first, _ = await ask(
        checkout, reference, "capture", {"amount": eur("10.00"), "final": False}, headers
    )
    assert first == 202
    status, answer = await ask(checkout, reference, kind, other, headers)
    assert status == 409, answer
    assert answer["error"] == "command_reused"
    assert len(await operations_of(sessions, reference)) == 2  # the paid capture and the first


# --- refused ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "order", "body", "status", "code"),
    [
        pytest.param("capture", {}, {"amount": eur("100.01")}, 409, "exceeds_authorized"),
        pytest.param(
            "refund", {"captured": "30.00"}, {"amount": eur("30.01")}, 409, "exceeds_captured"
        ),
        pytest.param("refund", {}, None, 409, "exceeds_captured", id="refund-uncaptured"),
        pytest.param("cancel", {}, {"amount": eur("10.00")}, 422, "partial_cancel"),
        pytest.param(
            "capture",
            {},
            {"amount": {"value": "10.00", "currency": "USD"}},
            422,
            "currency_mismatch",
        ),
        pytest.param("capture", {"status": "created"}, None, 409, "not_authorized", id="unpaid"),
        pytest.param(
            "capture",
            {"capture_mode": CaptureMode.INSTANT},
            None,
            409,
            "capture_not_manual",
            id="instant-capture",
        ),
    ],
)
async def test_a_request_breaking_a_money_rule_is_refused_and_stores_nothing(
    kind: str,
    order: dict[str, Any],
    body: Any,
    status: int,
    code: str,
    checkout: Client,
    sessions: async_sessionmaker[AsyncSession],
    amqp_connection: AbstractRobustConnection,
    topology: Names,
    sandbox: SandboxHandle,
) -> None:
    reference = await insert_paid_order(sessions, **order)
    stored = len(await operations_of(sessions, reference))
    before = refused(kind, code)
    answered, answer = await ask(checkout, reference, kind, body)
    assert answered == status, answer
    assert (answer["status"], answer["error"]) == (status, code)
    assert answer["message"] == answer["detail"]
    assert answer["message"]
    assert len(await operations_of(sessions, reference)) == stored
    assert await executes(amqp_connection, topology) == []
    assert refused(kind, code) == before + 1
    assert (await sandbox.stats())["actionsExecuted"] == {}


async def test_a_cancel_while_one_is_in_flight_then_after_it_succeeded_is_409(
    checkout: Client, sessions: async_sessionmaker[AsyncSession], topology: Names
) -> None:
    reference = await insert_paid_order(sessions)
    status, first = await ask(checkout, reference, "cancel")
    assert status == 202, first
    status, answer = await ask(checkout, reference, "cancel")
    assert (status, answer["error"]) == (409, "operation_in_progress")
    await settle(sessions, first["operation"]["id"], OperationState.SUCCEEDED)
    status, answer = await ask(checkout, reference, "cancel")
    assert (status, answer["error"]) == (409, "order_cancelled")
    status, answer = await ask(checkout, reference, "capture")
    assert (status, answer["error"]) == (409, "order_cancelled")
    assert len(await operations_of(sessions, reference)) == 1


async def test_an_invalid_amount_is_422_naming_the_field(
    checkout: Client, sessions: async_sessionmaker[AsyncSession], topology: Names
) -> None:
    reference = await insert_paid_order(sessions)
    status, answer = await ask(checkout, reference, "capture", {"amount": eur("1.5")})
    assert status == 422, answer
    assert answer["error"] == "validation_failed"
    assert [e["field"] for e in answer["errors"]] == ["amount.value"]
    assert await operations_of(sessions, reference) == []


@pytest.mark.parametrize("kind", ["capture", "cancel", "refund"])
async def test_an_unknown_order_is_404(kind: str, checkout: Client, topology: Names) -> None:
    status, answer = await ask(checkout, "no-such-order", kind)
    assert (status, answer["error"]) == (404, "not_found")


@pytest.mark.parametrize("key", [None, "", "k" * 65, "not a token"])
async def test_a_missing_or_malformed_idempotency_key_is_400_and_stores_nothing(
    key: str | None,
    checkout: Client,
    sessions: async_sessionmaker[AsyncSession],
    topology: Names,
) -> None:
    reference = await insert_paid_order(sessions)
    headers = dict(MERCHANT_AUTH) if key is None else {**MERCHANT_AUTH, "Idempotency-Key": key}
    status, answer = await ask(checkout, reference, "capture", None, headers)
    assert (status, answer["error"]) == (400, "idempotency_key_invalid")
    assert await operations_of(sessions, reference) == []


@pytest.mark.parametrize(
    "authorization", [None, "Bearer not-a-merchant-key"], ids=["missing", "wrong"]
)
@pytest.mark.parametrize("kind", ["capture", "cancel", "refund"])
async def test_without_a_valid_api_key_the_request_is_401_and_stores_nothing(
    kind: str,
    authorization: str | None,
    checkout: Client,
    sessions: async_sessionmaker[AsyncSession],
    topology: Names,
) -> None:
    reference = await insert_paid_order(sessions, captured="10.00")
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    if authorization is not None:
        headers["Authorization"] = authorization
    status, answer = await ask(checkout, reference, kind, None, headers)
    assert (status, answer["error"]) == (401, "unauthorized")
    assert len(await operations_of(sessions, reference)) == 1  # the paid capture only


# --- read ---------------------------------------------------------------------------------------


async def test_reading_the_order_shows_its_money_picture_and_operations(
    checkout: Client, sessions: async_sessionmaker[AsyncSession], topology: Names
) -> None:
    reference = await insert_paid_order(sessions, captured="30.00")
    _, refund = await ask(checkout, reference, "refund", {"amount": eur("5.00")})
    await settle(sessions, refund["operation"]["id"], OperationState.SUCCEEDED)
    response = await checkout.get(f"/merchant/orders/{reference}", headers=MERCHANT_AUTH)
    answer = await response.json()
    assert response.status == 200, answer
    assert answer["money"] == {
        "currency": "EUR",
        "authorized": "100.00",
        "captured": "30.00",
        "refunded": "5.00",
    }
    assert [(op["kind"], op["amount"], op["state"]) for op in answer["operations"]] == [
        ("capture", eur("30.00"), "succeeded"),
        ("refund", eur("5.00"), "succeeded"),
    ]
    assert answer["operations"][1]["id"] == refund["operation"]["id"]


# --- broker down --------------------------------------------------------------------------------


async def test_broker_down_after_the_commit_is_503_and_the_same_key_again_sends_it_once(
    checkout: Client,
    checkout_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    amqp_connection: AbstractRobustConnection,
    topology: Names,
    broker_proxy: TcpProxy,
) -> None:
    reference = await insert_paid_order(sessions)
    proxied = through(
        checkout_settings.model_copy(update={"checkout_port": free_port()}), broker_proxy.port
    )
    app = create_checkout_app(proxied)
    headers = key_header()
    body = {"amount": eur("70.00"), "final": False}
    async with TestClient(TestServer(app, host="127.0.0.1", port=proxied.checkout_port)) as client:
        assert await app[BROKER].wait_ready(10)
        await broker_proxy.cut()
        response = await client.post(
            f"/merchant/orders/{reference}/captures", json=body, headers=headers
        )
        answer = await response.json(content_type=None)
        assert response.status == 503, answer
        assert response.content_type == PROBLEM
        assert answer["error"] == "broker_unavailable"
        assert int(response.headers["Retry-After"]) >= 1
        (row,) = await operations_of(sessions, reference)
        assert row.state is OperationState.REQUESTED
        assert await executes(amqp_connection, topology) == []

        await broker_proxy.start()
        assert await app[BROKER].wait_ready(10)
        status, retried = await ask(client, reference, "capture", body, headers)
    assert status == 202, retried
    assert retried["operation"]["id"] == str(row.idempotency_key)
    assert len(await operations_of(sessions, reference)) == 1
    assert await executes(amqp_connection, topology) == [str(row.idempotency_key)]
