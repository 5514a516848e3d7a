"""The checkout app on a real socket, the authorize consumer in-process, the sandbox as Payrails."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ingress.checkout.keys import CHECKOUT
from ingress.checkout.shopper import COOKIE, HEADER
from ingress.checkout_app import create_checkout_app
from ingress.keys import BROKER
from sandbox.control_client import SandboxHandle
from sandbox.keys import IDEMPOTENCY
from shared.checkout_sessions import BoundSession, resolve_session, token_hash
from shared.config import SANDBOX_MERCHANT_API_KEY, Secret
from shared.db.models import (
    CheckoutSession,
    IdempotencyKey,
    Order,
    OrderTransition,
    OutboxMessage,
)
from shared.messaging import Names, open_channel
from shared.order_store import utcnow
from shared.payrails.client import open_payrails_client
from tests.conftest import ServiceUrls
from tests.ingress.proxy import TcpProxy
from tests.ports import free_port
from tests.read_only import ReadOnlySwitch
from tests.settings import Settings
from worker.authorize import handle_authorize
from worker.deps import Deps
from worker.preauthorize import Decision, PreAuthorizeHook

FRICTIONLESS = "4242424242424242"
CHALLENGE = "4000000000003220"
DECLINE = "4000000000009995"
UNKNOWN = "4000000000000119"
_orders = itertools.count(1)
MERCHANT_AUTH = {"Authorization": f"Bearer {SANDBOX_MERCHANT_API_KEY}"}
Client = TestClient[web.Request, web.Application]


@pytest.fixture
def checkout_settings(settings: Settings, sandbox: SandboxHandle) -> Settings:
    """Short long-polls and no client-side retries, so every test stays quick."""
    port = free_port()
    return settings.model_copy(
        update={
            "payrails_base_url": sandbox.url,
            "payrails_timeout_seconds": 5.0,
            "payrails_max_retries": 0,
            "payrails_retry_backoff_seconds": 0.02,
            "checkout_host": "127.0.0.1",
            "checkout_port": port,
            "public_base_url": f"http://127.0.0.1:{port}",
            "checkout_poll_timeout_seconds": 4.0,
            "return_poll_timeout_seconds": 4.0,
        }
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


@contextlib.asynccontextmanager
async def serve_checkout(settings: Settings) -> AsyncIterator[Client]:
    """Another checkout app, on ``settings.checkout_port``, with its broker connected."""
    app = create_checkout_app(settings)
    server = TestServer(app, host="127.0.0.1", port=settings.checkout_port)
    async with TestClient(server) as client:
        assert await app[BROKER].wait_ready(10)
        yield client


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


def terms(
    reference: str | None = None,
    value: str = "129.90",
    customer: str = "customer-1",
    currency: str = "EUR",
) -> dict[str, Any]:
    """A create-order body, as a commerce backend sends it."""
    return {
        "orderReference": reference or new_reference(),
        "amount": {"value": value, "currency": currency},
        "customerReference": customer,
    }


async def create_order(
    checkout: Client,
    *,
    reference: str | None = None,
    value: str = "129.90",
    customer: str = "customer-1",
) -> tuple[str, str]:
    """Create the order through the merchant API: its reference and a checkout session token."""
    body = terms(reference, value, customer)
    response = await checkout.post("/merchant/orders", json=body, headers=MERCHANT_AUTH)
    assert response.status in (200, 201), await response.text()
    answer = await response.json()
    return body["orderReference"], answer["checkoutSession"]["token"]


async def open_session(checkout: Client, token: str) -> None:
    """Follow the checkout link as the shopper's browser does: the cookie lands in the jar."""
    response = await checkout.get(f"/checkout/start?session={token}", allow_redirects=False)
    assert response.status == 303, await response.text()


async def start_checkout(
    checkout: Client,
    *,
    reference: str | None = None,
    value: str = "129.90",
    customer: str = "customer-1",
) -> str:
    """Create an order and open its checkout session in ``checkout``'s cookie jar."""
    reference, token = await create_order(
        checkout, reference=reference, value=value, customer=customer
    )
    await open_session(checkout, token)
    return reference


def session_token(checkout: Client) -> str:
    """The checkout session token in ``checkout``'s cookie jar."""
    cookies = checkout.session.cookie_jar.filter_cookies(checkout.make_url("/"))
    return cookies[COOKIE].value


def session_header(token: str) -> dict[str, str]:
    """The header that carries a checkout session without a cookie (native apps, other hosts)."""
    return {HEADER: token}


async def bound_session(checkout: Client) -> BoundSession:
    """The checkout session in ``checkout``'s cookie jar, as the app resolves it."""
    async with checkout.server.app[CHECKOUT].sessions.begin() as session:
        bound = await resolve_session(session, session_token(checkout))
    assert bound is not None
    return bound


async def expire_session(sessions: async_sessionmaker[AsyncSession], token: str) -> None:
    """Let the session this token names run out, as an hour's wait would."""
    async with sessions.begin() as session:
        expired = await session.scalars(
            update(CheckoutSession)
            .where(CheckoutSession.token_hash == token_hash(token))
            .values(expires_at=utcnow() - timedelta(seconds=1))
            .returning(CheckoutSession.id)
        )
        assert len(expired.all()) == 1


async def tokenize(checkout: Client, sandbox: SandboxHandle, card: str) -> str:
    """Init through the checkout (as the storefront does), then tokenize at the sandbox."""
    response = await checkout.post("/payments/init", json={"type": "secureFields"})
    assert response.status == 200, await response.text()
    return await sandbox.tokenize(await response.json(), card)


def client_init_answers(sandbox: SandboxHandle) -> list[Any]:
    """The client/init bodies the sandbox answered, from its idempotency store."""
    stored = sandbox.running.app[IDEMPOTENCY]._responses.values()
    bodies = [json.loads(response.body) for response in stored]
    return [body for body in bodies if set(body) == {"version", "data"}]


def init_holder(payload: dict[str, Any]) -> str:
    """The holder reference a client/init payload was made for (inside its base64 ``data``)."""
    holder: str = json.loads(base64.b64decode(payload["data"]))["holderReference"]
    return holder


async def order_body(
    checkout: Client,
    sandbox: SandboxHandle,
    card: str,
    *,
    reference: str | None = None,
    value: str = "129.90",
) -> dict[str, Any]:
    """A new order (merchant API), its session opened, and the seed's place-order body for it."""
    reference = await start_checkout(checkout, reference=reference, value=value)
    return {
        "paymentInstrumentId": await tokenize(checkout, sandbox, card),
        "paymentMethodCode": "card",
        "amount": {"value": value, "currency": "EUR"},
        "orderReference": reference,
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


async def order_row(sessions: async_sessionmaker[AsyncSession], reference: str) -> Order:
    """The order as stored now."""
    async with sessions() as session:
        order = await session.scalar(select(Order).where(Order.reference == reference))
    assert order is not None
    return order


async def idempotency_operations(
    sessions: async_sessionmaker[AsyncSession], reference: str
) -> list[str]:
    """The Payrails operations a key was stored for: one before each call, none without."""
    async with sessions() as session:
        rows = await session.scalars(
            select(IdempotencyKey.operation)
            .join(Order, Order.id == IdempotencyKey.order_id)
            .where(Order.reference == reference)
            .order_by(IdempotencyKey.id)
        )
        return list(rows)


def through(settings: Settings, port: int) -> Settings:
    """The same settings with AMQP_URL pointed at 127.0.0.1:<port>."""
    parts = urlsplit(settings.amqp_url.reveal())
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{port}"
    return settings.model_copy(update={"amqp_url": Secret(parts._replace(netloc=netloc).geturl())})


@pytest.fixture
async def broker_proxy(checkout_settings: Settings) -> AsyncIterator[TcpProxy]:
    """A TCP proxy to the test RabbitMQ, listening; cut at the end."""
    target = urlsplit(checkout_settings.amqp_url.reveal())
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    await proxy.start()
    yield proxy
    await proxy.cut()


@pytest.fixture
def read_only_switch(settings: Settings, service_urls: ServiceUrls) -> Iterator[ReadOnlySwitch]:
    """The run's database made to refuse writes by the test; always writable again afterwards."""
    switch = ReadOnlySwitch(settings.database_url, service_urls)
    try:
        yield switch
    finally:
        switch.off()
