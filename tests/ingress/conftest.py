"""Fixtures for the webhook ingress: the real app on 127.0.0.1, the real RabbitMQ behind it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol
from urllib.parse import urlsplit

import pytest
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ingress.health import ADMIN_RUNNER
from ingress.keys import BROKER
from ingress.signature import sign
from ingress.webhook_app import WEBHOOK_PATH, create_webhook_app
from shared.config import Secret
from shared.messaging import Names
from tests.ingress.proxy import TcpProxy
from tests.settings import Settings

Client = TestClient[web.Request, web.Application]


class StartIngress(Protocol):
    def __call__(self, settings: Settings, *, wait_ready: bool = True) -> Awaitable[Client]: ...


# Modules whose behaviour depends on the publisher run once with each WEBHOOK_PUBLISHER:
# ``pytestmark = EACH_PUBLISHER``. Elsewhere the ingress uses the default one.
EACH_PUBLISHER = pytest.mark.parametrize("ingress_settings", ["custom", "aio-pika"], indirect=True)


@pytest.fixture
def ingress_settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """Short publish timeout and reconnect interval, so outage tests finish quickly."""
    return settings.model_copy(
        update={
            "amqp_publish_timeout_seconds": 1.0,
            "amqp_reconnect_interval_seconds": 0.2,
            "webhook_publisher": getattr(request, "param", settings.webhook_publisher),
        }
    )


def through(settings: Settings, port: int) -> Settings:
    """The same settings with AMQP_URL pointed at 127.0.0.1:<port>."""
    parts = urlsplit(settings.amqp_url.reveal())
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{port}"
    return settings.model_copy(update={"amqp_url": Secret(parts._replace(netloc=netloc).geturl())})


@pytest.fixture
async def proxy(ingress_settings: Settings) -> AsyncIterator[TcpProxy]:
    """A TCP proxy to the test RabbitMQ, not yet listening; cut at the end."""
    target = urlsplit(ingress_settings.amqp_url.reveal())
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    yield proxy
    await proxy.cut()


@pytest.fixture
async def start_ingress() -> AsyncIterator[StartIngress]:
    """Start webhook apps on free ports; each is closed (SIGTERM path: cleanup ctx) at the end."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(settings: Settings, *, wait_ready: bool = True) -> Client:
            server = TestServer(create_webhook_app(settings), host="127.0.0.1")
            client = await stack.enter_async_context(TestClient(server))
            if wait_ready:
                assert await client.app[BROKER].wait_ready(10)
            return client

        yield start


@pytest.fixture
async def client(
    ingress_settings: Settings, topology: Names, start_ingress: StartIngress
) -> Client:
    """A connected ingress whose topology the test owns."""
    return await start_ingress(ingress_settings)


@pytest.fixture
async def patient_client(
    ingress_settings: Settings, topology: Names, start_ingress: StartIngress
) -> Client:
    """Like ``client``, but a delivery waits up to 30 s for its confirm, however long a test
    holds it."""
    return await start_ingress(
        ingress_settings.model_copy(update={"amqp_publish_timeout_seconds": 30.0})
    )


def webhook_body(event: str = "executionActionCompleted", **extra: Any) -> bytes:
    """A Payrails-shaped notification body."""
    data = {
        "event": event,
        "time": "2026-11-23T10:00:00.000Z",
        "details": {
            "action": "authorize",
            "actionId": "5b1f2c1e-8f6b-4f57-9d7e-0c7ab1a4d001",
            "success": True,
            "execution": {"id": "exec-1", "merchantReference": "order-1"},
        },
        **extra,
    }
    return json.dumps(data).encode()


async def post_signed(client: Client, body: bytes, settings: Settings, key: int = 0) -> Any:
    """POST ``body`` signed with key number ``key``."""
    signature = sign(body, settings.payrails_webhook_keys[key])
    return await client.post(WEBHOOK_PATH, data=body, headers={"X-Signature": signature})


async def queue_depth(connection: AbstractRobustConnection, queue: str) -> int:
    """Messages ready in ``queue`` (a passive declare: the queue must exist)."""
    async with connection.channel() as channel:
        declared = await channel.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count
        assert count is not None
        return count


def admin_url(app: web.Application, path: str) -> str:
    """``path`` on the app's admin server (readiness, metrics), which the app started."""
    host, port = app[ADMIN_RUNNER].addresses[0][:2]
    return f"http://{host}:{port}{path}"


async def admin_get(client: Client, path: str) -> tuple[int, str]:
    """GET ``path`` from the admin server of ``client``'s app: the status and the body."""
    async with client.session.get(admin_url(client.app, path)) as response:
        return response.status, await response.text()
