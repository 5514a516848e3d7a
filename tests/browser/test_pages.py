"""The storefront pages and the Secure Fields assets, served without a browser."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from html.parser import HTMLParser

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ingress.keys import CHECKOUT_SETTINGS, SETTINGS
from ingress.storefront import TEST_CARDS, setup_storefront_routes
from sandbox.secure_fields import ASSETS, FIELD_PATH, SDK_PATH, setup_secure_fields_routes
from tests.settings import Settings

Client = TestClient[web.Request, web.Application]
StartStorefront = Callable[[Settings], Awaitable[Client]]
Attributes = dict[str, str | None]


class _ById(HTMLParser):
    """Every element of a page that has an id: its tag, its attributes and the text it holds
    up to its own end tag (enough for the leaf elements these tests look at)."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: dict[str, tuple[str, Attributes, list[str]]] = {}
        self._reading: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        element_id = attributes.get("id")
        if element_id:
            text: list[str] = []
            self.elements[element_id] = (tag, attributes, text)
            self._reading = (tag, text)

    def handle_endtag(self, tag: str) -> None:
        if self._reading is not None and self._reading[0] == tag:
            self._reading = None

    def handle_data(self, data: str) -> None:
        if self._reading is not None:
            self._reading[1].append(data)


def elements_by_id(page: str) -> dict[str, tuple[str, Attributes, str]]:
    """Element id -> (tag, attributes, text)."""
    parser = _ById()
    parser.feed(page)
    return {key: (tag, attrs, "".join(text)) for key, (tag, attrs, text) in parser.elements.items()}


@pytest.fixture
async def storefront() -> AsyncIterator[StartStorefront]:
    """Start a bare app with only the storefront routes, for the given settings."""
    clients: list[Client] = []

    async def start(settings: Settings) -> Client:
        app = web.Application()
        app[SETTINGS] = app[CHECKOUT_SETTINGS] = settings
        setup_storefront_routes(app)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def sandbox_assets() -> AsyncIterator[Client]:
    app = web.Application()
    setup_secure_fields_routes(app)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_checkout_page_loads_the_sdk_from_the_payrails_origin(
    storefront: StartStorefront,
) -> None:
    client = await storefront(Settings(payrails_base_url="http://127.0.0.1:18090"))
    response = await client.get("/")
    page = await response.text()
    assert response.status == 200
    assert f'<script src="http://127.0.0.1:18090{SDK_PATH}"></script>' in page
    assert (
        "script-src 'self' http://127.0.0.1:18090;" in response.headers["Content-Security-Policy"]
    )


async def test_checkout_page_prefers_the_sdk_origin_setting(storefront: StartStorefront) -> None:
    real = "x" * 40  # a Payrails that is not the loopback sandbox wants real-looking secrets
    settings = Settings.from_env(
        {
            "PAYRAILS_BASE_URL": "http://sandbox:8090",
            "PAYRAILS_SDK_ORIGIN": "http://127.0.0.1:8090",
            "PAYRAILS_CLIENT_SECRET": real,
            "PAYRAILS_WEBHOOK_SECRETS": real,
            "MERCHANT_API_KEYS": real,
        }
    )
    page = await (await (await storefront(settings)).get("/")).text()
    assert f'<script src="http://127.0.0.1:8090{SDK_PATH}"></script>' in page
    assert "http://sandbox:8090" not in page


async def test_checkout_page_has_the_three_card_mounts_the_modal_and_every_test_card(
    storefront: StartStorefront,
) -> None:
    page = await (await (await storefront(Settings())).get("/")).text()
    for element_id in ("card-number", "card-expiry", "card-cvv", "place-order", "threeds-iframe"):
        assert f'id="{element_id}"' in page
    for card in TEST_CARDS:
        assert card.number in page


async def test_checkout_page_holds_no_price_only_a_placeholder_for_the_sessions_order(
    storefront: StartStorefront,
) -> None:
    """The amount comes from GET /checkout/session at run time: the page itself names none."""
    page = await (await (await storefront(Settings())).get("/")).text()
    elements = elements_by_id(page)
    tag, attributes, text = elements["order-amount"]
    assert (tag, text) == ("strong", "…")
    assert not [name for name in attributes if name.startswith("data-")]
    assert elements["order-reference"][2] == "…"
    assert not re.findall(r"\b\d+[.,]\d{2}\b", page), "a price in the checkout page"
    assert "EUR" not in page


async def test_checkout_page_has_the_no_session_message_hidden_until_the_script_shows_it(
    storefront: StartStorefront,
) -> None:
    page = await (await (await storefront(Settings())).get("/")).text()
    tag, attributes, text = elements_by_id(page)["no-session"]
    assert tag == "p"
    assert "hidden" in attributes
    assert attributes.get("role") == "alert"
    assert "open the checkout from your shop" in " ".join(text.split())
    assert "disabled" in elements_by_id(page)["place-order"][1]


async def test_confirmation_page_escapes_the_reference(storefront: StartStorefront) -> None:
    response = await (await storefront(Settings())).get("/order-confirmation/%3Cb%3Ex")
    page = await response.text()
    assert response.status == 200
    assert 'data-reference="&lt;b&gt;x"' in page
    assert "<b>x" not in page


async def test_storefront_scripts_are_served(storefront: StartStorefront) -> None:
    client = await storefront(Settings())
    for name in ("checkout.js", "confirmation.js"):
        response = await client.get(f"/static/{name}")
        assert response.status == 200
        assert response.content_type == "application/javascript"


async def test_sandbox_serves_the_sdk_and_every_field_asset(sandbox_assets: Client) -> None:
    for path, (_, content_type) in ASSETS.items():
        response = await sandbox_assets.get(path)
        assert response.status == 200, path
        assert response.content_type == content_type


async def test_field_page_may_be_framed_but_only_talks_to_its_own_origin(
    sandbox_assets: Client,
) -> None:
    response = await sandbox_assets.get(FIELD_PATH, params={"type": "CVV"})
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors *" in policy
    assert "connect-src 'self'" in policy
    assert "script-src 'self'" in policy
