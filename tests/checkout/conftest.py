"""The checkout app on a real socket, the authorize consumer in-process, the sandbox as Payrails."""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ingress.checkout_app import create_checkout_app
from ingress.keys import BROKER
from sandbox.control_client import SandboxHandle
from shared.config import Settings
from shared.db.models import Order, OrderTransition, OutboxMessage
from shared.messaging import Names, open_channel
from shared.payrails.client import open_payrails_client
from tests.ports import free_port
from worker.authorize import handle_authorize
from worker.deps import Deps
from worker.preauthorize import Decision, PreAuthorizeHook

FRICTIONLESS = "4242424242424242"
CHALLENGE = "4000000000003220"
DECLINE = "4000000000009995"
UNKNOWN = "4000000000000119"
_orders = itertools.count(1)


@pytest.fixture
def checkout_settings(settings: Settings, sandbox: SandboxHandle) -> Settings:
    """Short long-polls and no client-side retries, so every test stays quick."""
    port = free_port()
    return dataclasses.replace(
        settings,
        payrails_base_url=sandbox.url,
        payrails_timeout_seconds=5.0,
        payrails_max_retries=0,
        payrails_retry_backoff_seconds=0.02,
        checkout_host="127.0.0.1",
        checkout_port=port,
        public_base_url=f"http://127.0.0.1:{port}",
        checkout_poll_timeout_seconds=4.0,
        return_poll_timeout_seconds=4.0,
    )


@pytest.fixture
async def checkout(
    checkout_settings: Settings, topology: Names
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """A client of the checkout app, served on the port public_base_url names."""
    app = create_checkout_app(checkout_settings)
    server = TestServer(app, host="127.0.0.1", port=checkout_settings.checkout_port)
    client = TestClient(server)
    await client.start_server()
    assert await app[BROKER].wait_ready(10)
    yield client
    await client.close()


@dataclasses.dataclass
class DenyAll:
    reason: str
    checked: list[str] = dataclasses.field(default_factory=list)

    async def check(self, order: Order) -> Decision:
        self.checked.append(order.reference)
        return Decision.deny(self.reason)


@dataclasses.dataclass
class AuthorizeConsumer:
    """The authorize consumer on this test's queue; ``hook`` may be swapped by a test."""

    deps: Deps
    hook: PreAuthorizeHook | None = None

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        await handle_authorize(message, self.deps, hook=self.hook)


@pytest.fixture
async def authorize_consumer(
    checkout_settings: Settings,
    topology: Names,
    amqp_connection: AbstractRobustConnection,
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AuthorizeConsumer]:
    """Its Payrails client shares the checkout's settings: no client-side retries."""
    publish_channel = await open_channel(amqp_connection)
    consume_channel = await amqp_connection.channel()
    await consume_channel.set_qos(prefetch_count=16)
    async with open_payrails_client(checkout_settings) as payrails:
        deps = Deps(checkout_settings, topology, sessions, payrails, publish_channel)
        consumer = AuthorizeConsumer(deps)
        queue = await consume_channel.get_queue(topology.authorize_queue, ensure=False)
        tag = await queue.consume(consumer.on_message)
        yield consumer
        await queue.cancel(tag)
    await consume_channel.close()
    await publish_channel.close()


def new_reference(prefix: str = "order") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}-{next(_orders)}"


async def tokenize(
    checkout: TestClient[web.Request, web.Application], sandbox: SandboxHandle, card: str
) -> str:
    """Init through the checkout (as the storefront does), then tokenize at the sandbox."""
    response = await checkout.post(
        "/payments/init", json={"holderReference": "customer-1", "type": "secureFields"}
    )
    assert response.status == 200, await response.text()
    return await sandbox.tokenize(await response.json(), card)


async def order_body(
    checkout: TestClient[web.Request, web.Application],
    sandbox: SandboxHandle,
    card: str,
    *,
    reference: str | None = None,
    value: str = "129.90",
) -> dict[str, Any]:
    return {
        "paymentInstrumentId": await tokenize(checkout, sandbox, card),
        "paymentMethodCode": "card",
        "amount": {"value": value, "currency": "EUR"},
        "orderReference": reference or new_reference(),
        "customerReference": "customer-1",
    }


async def transitions_of(
    sessions: async_sessionmaker[AsyncSession], reference: str
) -> list[tuple[str, str, str]]:
    async with sessions() as session:
        rows = await session.execute(
            select(OrderTransition.from_status, OrderTransition.to_status, OrderTransition.cause)
            .join(Order, Order.id == OrderTransition.order_id)
            .where(Order.reference == reference)
            .order_by(OrderTransition.id)
        )
        return [(a, b, c) for a, b, c in rows]


async def outbox_of(sessions: async_sessionmaker[AsyncSession], reference: str) -> list[str]:
    async with sessions() as session:
        rows = await session.scalars(
            select(OutboxMessage.routing_key)
            .join(Order, Order.id == OutboxMessage.order_id)
            .where(Order.reference == reference)
            .order_by(OutboxMessage.id)
        )
        return list(rows)


async def count_orders(sessions: async_sessionmaker[AsyncSession], reference: str) -> int:
    async with sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(Order).where(Order.reference == reference)
        )
        return int(count or 0)
