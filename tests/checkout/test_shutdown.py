"""Shutdown: requests still long-polling Payrails answer at once instead of being cut off."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ingress.checkout_app import create_checkout_app
from ingress.keys import BROKER
from sandbox.control_client import SandboxHandle
from shared.messaging import Names
from tests.checkout.conftest import (
    CHALLENGE,
    FRICTIONLESS,
    AuthorizeConsumer,
    order_body,
    session_header,
    session_token,
)
from tests.ports import free_port
from tests.settings import Settings
from tests.waiting import wait_until

Client = TestClient[web.Request, web.Application]
# Far beyond the runner's shutdown timeout: without the early end the handler is cancelled.
LONG_POLL_SECONDS = 120.0
SHUTDOWN_TIMEOUT_SECONDS = 5.0


async def start_long_polling_app(settings: Settings) -> TestServer:
    """A second checkout app whose long-polls outlast its runner's shutdown timeout."""
    settings = settings.model_copy(
        update={
            "checkout_port": free_port(),
            "checkout_poll_timeout_seconds": LONG_POLL_SECONDS,
            "return_poll_timeout_seconds": LONG_POLL_SECONDS,
        }
    )
    app = create_checkout_app(settings)
    server = TestServer(app, host="127.0.0.1", port=settings.checkout_port)
    await server.start_server(shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
    assert await app[BROKER].wait_ready(10)
    return server


async def test_shutdown_answers_processing_to_a_place_order_still_polling(
    checkout: Client, checkout_settings: Settings, topology: Names, sandbox: SandboxHandle
) -> None:
    """No authorize consumer runs, so the execution stays ``created`` and the poll would block."""
    server = await start_long_polling_app(checkout_settings)
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    async with aiohttp.ClientSession() as session:
        pending = asyncio.create_task(
            session.post(
                server.make_url("/checkout/place-order"),
                json=body,
                headers=session_header(session_token(checkout)),
            )
        )

        async def polling() -> bool:
            order = await (await checkout.get(f"/orders/{body['orderReference']}")).json()
            return bool(order.get("status") == "authorizing")

        await wait_until(polling)
        closing = asyncio.create_task(server.close())
        response = await pending
        answer = await response.json()
        await closing
    assert response.status == 202, answer
    assert answer == {
        "status": "processing",
        "executionId": answer["executionId"],
        "orderReference": body["orderReference"],
    }


async def test_shutdown_answers_processing_to_a_return_page_still_polling(
    checkout: Client,
    checkout_settings: Settings,
    topology: Names,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
) -> None:
    """Nobody answers the challenge, so the execution stays ``authorizePending``."""
    body = await order_body(checkout, sandbox, CHALLENGE)
    challenge = await (await checkout.post("/checkout/place-order", json=body)).json()
    assert challenge["actionRequired"] == "3ds", challenge
    server = await start_long_polling_app(checkout_settings)
    url = server.make_url(f"/payment-return/{challenge['executionId']}")
    polls_before = (await sandbox.stats())["requests"]["get_execution"]
    async with aiohttp.ClientSession() as session:
        headers = {"Accept": "application/json", **session_header(session_token(checkout))}
        pending = asyncio.create_task(session.get(url, headers=headers))

        async def polling() -> bool:
            stats = await sandbox.stats()
            return bool(stats["requests"]["get_execution"] > polls_before)

        await wait_until(polling)
        closing = asyncio.create_task(server.close())
        response = await pending
        answer = await response.json()
        await closing
    assert response.status == 200, answer
    assert answer["status"] == "processing"
    assert answer["orderReference"] == body["orderReference"]
