"""Place-order after a failure: a retried refusal, the broker down or silent, Payrails down."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ingress.checkout_app import create_checkout_app
from ingress.health import ADMIN_RUNNER
from ingress.keys import BROKER
from sandbox.control_client import SandboxHandle
from shared.db.models import Order
from shared.messaging import Names
from tests.checkout.conftest import (
    FRICTIONLESS,
    AuthorizeConsumer,
    order_body,
    session_header,
    session_token,
    through,
    tokenize,
    transitions_of,
)
from tests.ingress.proxy import TcpProxy
from tests.ports import free_port
from tests.settings import Settings
from tests.waiting import wait_until
from worker.sweeper import sweep_once

Client = TestClient[web.Request, web.Application]


async def stored_instrument(sessions: async_sessionmaker[AsyncSession], reference: str) -> str:
    async with sessions() as session:
        instrument = await session.scalar(
            select(Order.payment_instrument_id).where(Order.reference == reference)
        )
    assert instrument is not None
    return instrument


async def test_a_retry_after_503_with_a_freshly_tokenized_card_is_authorized_once(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The storefront tokenizes again on every click: the retry's instrument is taken."""
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    await sandbox.set_faults({"endpoints": {"create_execution": {"error_rate": 1, "times": 1}}})
    down = await checkout.post("/checkout/place-order", json=body)
    assert down.status == 503

    retry_body = {**body, "paymentInstrumentId": await tokenize(checkout, sandbox, FRICTIONLESS)}
    retry = await checkout.post("/checkout/place-order", json=retry_body)
    answer = await retry.json()
    assert retry.status == 200, answer
    assert answer["status"] == "authorized"
    reference = body["orderReference"]
    assert await stored_instrument(sessions, reference) == retry_body["paymentInstrumentId"]
    stats = await sandbox.stats()
    assert stats["executionsCreated"] == 1
    assert stats["authorizesExecuted"] == {answer["executionId"]: 1}


async def test_a_new_instrument_after_the_order_is_paid_is_refused_and_not_taken(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    first = await (await checkout.post("/checkout/place-order", json=body)).json()
    retry_body = {**body, "paymentInstrumentId": await tokenize(checkout, sandbox, FRICTIONLESS)}
    again = await checkout.post("/checkout/place-order", json=retry_body)
    assert again.status == 409
    assert (await again.json())["error"] == "order_already_paid"
    assert await stored_instrument(sessions, body["orderReference"]) == body["paymentInstrumentId"]
    assert (await sandbox.stats())["authorizesExecuted"] == {first["executionId"]: 1}


async def test_broker_down_answers_503_and_a_retry_authorizes_once(
    checkout: Client,
    checkout_settings: Settings,
    topology: Names,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    broker_proxy: TcpProxy,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A second checkout app reaches RabbitMQ through a proxy that the test cuts."""
    proxied = through(
        checkout_settings.model_copy(update={"checkout_port": free_port()}), broker_proxy.port
    )
    app = create_checkout_app(proxied)
    server = TestServer(app, host="127.0.0.1", port=proxied.checkout_port)
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    headers = session_header(session_token(checkout))
    async with TestClient(server) as client:
        assert await app[BROKER].wait_ready(10)
        await broker_proxy.cut()
        down = await client.post("/checkout/place-order", json=body, headers=headers)
        answer = await down.json()
        assert down.status == 503, answer
        assert answer["error"] == "broker_unavailable"
        order = await (await checkout.get(f"/orders/{body['orderReference']}")).json()
        assert order["status"] == "created"

        await broker_proxy.start()
        assert await app[BROKER].wait_ready(10)
        retry = await client.post("/checkout/place-order", json=body, headers=headers)
        assert (await retry.json())["status"] == "authorized"
    stats = await sandbox.stats()
    assert stats["executionsCreated"] == 1
    assert sum(stats["authorizesExecuted"].values()) == 1
    assert await transitions_of(sessions, body["orderReference"]) == [
        ("created", "authorizing", "place_order"),
        ("authorizing", "paid", "poll"),
    ]


async def test_payrails_down_during_the_poll_is_retried_within_the_deadline(
    checkout: Client, sandbox: SandboxHandle, authorize_consumer: AuthorizeConsumer
) -> None:
    await sandbox.set_faults({"endpoints": {"get_execution": {"error_rate": 1, "times": 4}}})
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    response = await checkout.post("/checkout/place-order", json=body)
    answer = await response.json()
    assert response.status == 200, answer
    assert answer["status"] == "authorized"
    assert (await sandbox.stats())["faultsInjected"]["get_execution.error"] == 4


async def test_payrails_down_for_the_whole_poll_answers_503_and_the_same_request_completes(
    checkout: Client, sandbox: SandboxHandle, authorize_consumer: AuthorizeConsumer
) -> None:
    await sandbox.set_faults({"endpoints": {"get_execution": {"error_rate": 1}}})
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    response = await checkout.post("/checkout/place-order", json=body)
    answer = await response.json()
    assert response.status == 503, answer
    assert answer["error"] == "payrails_unavailable"
    assert answer["orderReference"] == body["orderReference"]
    assert (await sandbox.stats())["faultsInjected"]["get_execution.error"] >= 2

    async def authorized_once() -> bool:
        executed = (await sandbox.stats())["authorizesExecuted"]
        return bool(executed == {answer["executionId"]: 1})

    await wait_until(authorized_once)  # the authorize was queued before the poll
    await sandbox.clear_faults()
    again = await checkout.post("/checkout/place-order", json=body)
    assert again.status == 200
    assert (await again.json())["status"] == "authorized"
    assert (await sandbox.stats())["authorizesExecuted"] == {answer["executionId"]: 1}


async def test_broker_never_reachable_answers_503_problem_json_and_is_not_ready(
    checkout: Client, checkout_settings: Settings, topology: Names, sandbox: SandboxHandle
) -> None:
    """A second checkout app whose AMQP_URL names a port nobody listens on."""
    unreachable = through(
        checkout_settings.model_copy(update={"checkout_port": free_port()}), free_port()
    )
    app = create_checkout_app(unreachable)
    server = TestServer(app, host="127.0.0.1", port=unreachable.checkout_port)
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    async with TestClient(server) as client:
        response = await client.post(
            "/checkout/place-order", json=body, headers=session_header(session_token(checkout))
        )
        answer = await response.json(content_type=None)
        host, port = app[ADMIN_RUNNER].addresses[0][:2]
        async with client.session.get(f"http://{host}:{port}/readyz") as readiness:
            ready = await readiness.json()
    assert response.status == 503, answer
    assert response.content_type == "application/problem+json"
    assert answer["error"] == "broker_unavailable"
    assert readiness.status == 503
    assert ready["checks"]["broker"] is False
    order = await (await checkout.get(f"/orders/{body['orderReference']}")).json()
    assert order["status"] == "created"


async def test_a_broker_that_never_confirms_answers_503_once_the_publish_wait_is_over(
    checkout: Client,
    checkout_settings: Settings,
    topology: Names,
    sandbox: SandboxHandle,
    broker_proxy: TcpProxy,
) -> None:
    """The connection stays open but nothing comes back: AMQP_PUBLISH_TIMEOUT_SECONDS bounds it."""
    proxied = through(
        checkout_settings.model_copy(update={"checkout_port": free_port()}), broker_proxy.port
    )
    app = create_checkout_app(proxied)
    server = TestServer(app, host="127.0.0.1", port=proxied.checkout_port)
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    async with TestClient(server) as client:
        assert await app[BROKER].wait_ready(10)
        broker_proxy.stall()
        response = await client.post(
            "/checkout/place-order", json=body, headers=session_header(session_token(checkout))
        )
        answer = await response.json(content_type=None)
    assert response.status == 503, answer
    assert answer["error"] == "broker_unavailable"
    order = await (await checkout.get(f"/orders/{body['orderReference']}")).json()
    assert order["status"] == "created"


async def test_a_shopper_retrying_through_a_broker_outage_keeps_the_order_from_the_sweeper(
    checkout: Client,
    checkout_settings: Settings,
    topology: Names,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    broker_proxy: TcpProxy,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The merchant created the order past the sweeper's threshold; each attempt restarts it."""
    proxied = through(
        checkout_settings.model_copy(update={"checkout_port": free_port()}), broker_proxy.port
    )
    app = create_checkout_app(proxied)
    server = TestServer(app, host="127.0.0.1", port=proxied.checkout_port)
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    reference = body["orderReference"]
    threshold = timedelta(days=30)  # far older than anything another test leaves behind
    async with sessions.begin() as session:
        await session.execute(
            update(Order)
            .where(Order.reference == reference)
            .values(updated_at=Order.updated_at - 2 * threshold)
        )
    sweeper = dataclasses.replace(
        authorize_consumer.deps,
        settings=authorize_consumer.deps.settings.model_copy(
            update={"sweeper_stuck_after_seconds": threshold.total_seconds()}
        ),
    )
    headers = session_header(session_token(checkout))
    async with TestClient(server) as client:
        assert await app[BROKER].wait_ready(10)
        await broker_proxy.cut()
        down = await client.post("/checkout/place-order", json=body, headers=headers)
        assert down.status == 503, await down.json()

        swept = await sweep_once(sweeper)

        assert reference not in swept.abandoned
        order = await (await checkout.get(f"/orders/{reference}")).json()
        assert order["status"] == "created"
        await broker_proxy.start()
        assert await app[BROKER].wait_ready(10)
        retry = await client.post("/checkout/place-order", json=body, headers=headers)
        assert (await retry.json())["status"] == "authorized"
    assert sum((await sandbox.stats())["authorizesExecuted"].values()) == 1
