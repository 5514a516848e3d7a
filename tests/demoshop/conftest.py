"""The demo shop served for real, selling through the real checkout or, for the failures the
checkout cannot be made to show on demand (5xx, a hang), through a stand-in of its merchant API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from demoshop.app import create_demo_shop_app
from demoshop.config import DemoShopConfig
from ingress.checkout_app import create_checkout_app
from ingress.keys import BROKER
from sandbox.control_client import SandboxHandle
from shared.config import SANDBOX_MERCHANT_API_KEY, Secret
from shared.messaging import Names
from tests.demoshop.merchant_standin import API_KEY, MerchantApiStandIn, start_standin
from tests.ports import free_port
from tests.settings import Settings

TIMEOUT_SECONDS = 1.0


@pytest.fixture
async def merchant_api() -> AsyncIterator[MerchantApiStandIn]:
    standin, server = await start_standin()
    yield standin
    standin.release()
    await server.close()


async def serve_shop(config: DemoShopConfig) -> TestServer:
    server = TestServer(create_demo_shop_app(config), host="127.0.0.1")
    await server.start_server()
    return server


def shop_config(checkout_url: str, api_key: str = API_KEY) -> DemoShopConfig:
    return DemoShopConfig(
        checkout_url=checkout_url, api_key=Secret(api_key), timeout_seconds=TIMEOUT_SECONDS
    )


@pytest.fixture
async def shop(merchant_api: MerchantApiStandIn) -> AsyncIterator[str]:
    """The demo shop's origin, its merchant API the stand-in."""
    server = await serve_shop(shop_config(merchant_api.public_url))
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    """A client that keeps cookies (on 127.0.0.1 too) and does not follow redirects."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


@pytest.fixture
async def checkout(
    settings: Settings, sandbox: SandboxHandle, topology: Names
) -> AsyncIterator[str]:
    """The real checkout app (merchant API and shopper side) on a free port: its origin."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    checkout_settings = settings.model_copy(
        update={
            "payrails_base_url": sandbox.url,
            "checkout_host": "127.0.0.1",
            "checkout_port": port,
            "public_base_url": origin,
        }
    )
    app = create_checkout_app(checkout_settings)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    assert await app[BROKER].wait_ready(10)
    yield origin
    await server.close()


@pytest.fixture
async def checkout_shop(checkout: str) -> AsyncIterator[str]:
    """The demo shop's origin, selling through the real checkout with the sandbox's key."""
    server = await serve_shop(shop_config(checkout, api_key=SANDBOX_MERCHANT_API_KEY))
    yield str(server.make_url("")).rstrip("/")
    await server.close()
