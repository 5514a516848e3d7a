"""A real webhook reconciles the order while the place-order request is still long-polling.

Everything is real: the checkout app on a socket, the authorize consumer, the sandbox as
Payrails, the webhook ingress the sandbox delivers to, the events worker with its outbox relay,
and a queue bound to ``orders``.

How the checkout's poll is held: the sandbox's fault knobs are per endpoint, and the checkout's
long-poll and the events worker's re-poll are both ``get_execution``, so a plain latency or hang
would hold the worker too. The knob is therefore armed for one request only (``times: 1``), and
the webhook is kept ``held`` by the sandbox until the test releases it. Nothing but the checkout
asks for the execution before the webhook is released (the authorize consumer only calls
``authorize``; the worker re-polls only for a webhook), so the single hung request is the
checkout's long-poll for certain, and the worker's re-poll afterwards is answered normally. The
hang outlasts the checkout's whole poll deadline, so the poll cannot see the outcome: only the
webhook path can resolve the order, which the place-order's order watch then reports.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sandbox.control_client import Json, SandboxHandle
from shared.messaging import Names, open_channel
from shared.payrails.client import PayrailsClient
from tests.checkout.conftest import FRICTIONLESS, AuthorizeConsumer, order_body, transitions_of
from tests.settings import Settings
from tests.worker.conftest import QueueDriver, open_broker, running_worker
from worker.deps import Deps

Client = TestClient[web.Request, web.Application]

# The checkout's own poll deadline here: far longer than the webhook path needs, so the webhook
# always lands while the request is open, even on a slow machine.
POLL_DEADLINE_SECONDS = 20.0
# The held long-poll is kept longer than the checkout's deadline: it never answers in time.
HANG_SECONDS = POLL_DEADLINE_SECONDS + 5.0


@pytest.fixture
def checkout_settings(checkout_settings: Settings) -> Settings:
    """The checkout's settings with a long poll deadline (see POLL_DEADLINE_SECONDS)."""
    return checkout_settings.model_copy(
        update={"checkout_poll_timeout_seconds": POLL_DEADLINE_SECONDS}
    )


@pytest.fixture
async def orders(
    topology: Names, amqp_connection: AbstractRobustConnection
) -> AsyncIterator[QueueDriver]:
    """A queue bound to ``orders`` with ``#``, deleted afterwards."""
    async with open_broker(topology, amqp_connection) as opened:
        yield opened


@pytest.fixture
async def worker_deps(
    settings: Settings,
    topology: Names,
    sessions: async_sessionmaker[AsyncSession],
    payrails: PayrailsClient,
    amqp_connection: AbstractRobustConnection,
) -> AsyncIterator[Deps]:
    """The events worker's dependencies; its Payrails client talks to this test's sandbox."""
    channel = await open_channel(amqp_connection)
    yield Deps(settings, topology, sessions, payrails, channel)
    await channel.close()


async def place_order(checkout: Client, body: dict[str, Any]) -> tuple[int, Json]:
    response = await checkout.post("/checkout/place-order", json=body)
    answer: Json = await response.json()
    return response.status, answer


async def held_completion(sandbox: SandboxHandle) -> Json:
    """Once the checkout's long-poll is hung and the authorize webhook is held: that webhook."""
    async with asyncio.timeout(15):
        while True:
            stats = await sandbox.stats()
            held = [
                d
                for d in await sandbox.deliveries(event="executionActionCompleted")
                if d["status"] == "held"
            ]
            if stats["faultsInjected"].get("get_execution.hang") == 1 and held:
                [delivery] = held
                return delivery
            await asyncio.sleep(0.05)


@pytest.mark.usefixtures("webhook_ingress")
async def test_a_webhook_landing_during_the_long_poll_pays_the_order_and_answers_authorized(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    worker_deps: Deps,
    orders: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    reference = body["orderReference"]
    await sandbox.set_faults(
        {
            "endpoints": {
                "get_execution": {"hang_rate": 1.0, "hang_seconds": HANG_SECONDS, "times": 1}
            },
            "webhooks": {"hold_rate": 1.0},
        }
    )
    async with running_worker(worker_deps):
        request = asyncio.create_task(place_order(checkout, body))
        delivery = await held_completion(sandbox)
        assert not request.done()  # the POST is still open, its poll held at Payrails
        await sandbox.release(delivery["id"])
        status, answer = await request
        messages = await orders.settled_messages_for(sessions, {reference})

    assert status == 200, answer
    assert answer["status"] == "authorized"
    assert answer["orderReference"] == reference
    assert answer["executionId"] == delivery["executionId"]
    assert await transitions_of(sessions, reference) == [
        ("created", "authorizing", "place_order"),
        ("authorizing", "paid", "webhook"),
    ]
    order = await (await checkout.get(f"/orders/{reference}")).json()
    assert order["status"] == "paid"
    assert order["confirmedBy"] == "webhook"
    assert [m["_routing_key"] for m in messages] == ["order.paid"]
    assert (await sandbox.stats())["faultsInjected"] == {"get_execution.hang": 1}
