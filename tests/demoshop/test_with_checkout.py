"""The demo shop selling through the real checkout: its price, its redirect, its API key."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from yarl import URL

from demoshop.app import CUSTOMER_COOKIE
from shared.config import SANDBOX_MERCHANT_API_KEY
from tests.demoshop.conftest import serve_shop, shop_config
from tests.demoshop.pages import buy, get

MERCHANT_AUTH = {"Authorization": f"Bearer {SANDBOX_MERCHANT_API_KEY}"}


async def json_of(browser: aiohttp.ClientSession, url: str, **headers: str) -> Any:
    async with browser.get(url, headers=headers, allow_redirects=False) as response:
        assert response.status == 200, await response.text()
        return await response.json()


def session_token(checkout_url: str) -> str:
    return parse_qs(urlsplit(checkout_url).query)["session"][0]


async def test_buy_orders_at_the_catalogue_price_whatever_price_is_posted(
    checkout: str, checkout_shop: str, browser: aiohttp.ClientSession
) -> None:
    form = {"product": "headphones", "price": "0.01", "amount": "0.01", "currency": "JPY"}
    answer = await buy(browser, checkout_shop, form)
    token = session_token(answer.headers["Location"])
    summary = await json_of(
        browser, f"{checkout}/checkout/session", **{"X-Checkout-Session": token}
    )
    assert summary["amount"] == {"value": "129.90", "currency": "EUR"}


async def test_buy_redirects_to_the_checkout_url_that_opens_the_storefront_with_the_session(
    checkout: str, checkout_shop: str, browser: aiohttp.ClientSession
) -> None:
    answer = await buy(browser, checkout_shop, {"product": "earbuds"})
    assert answer.status == 303
    assert answer.headers["Location"].startswith(f"{checkout}/checkout/start?session=")
    start = await get(browser, answer.headers["Location"])
    assert (start.status, start.headers["Location"]) == (303, "/")
    summary = await json_of(browser, f"{checkout}/checkout/session")
    assert summary["amount"] == {"value": "59.00", "currency": "EUR"}


async def test_the_order_belongs_to_the_demo_customer_of_the_shops_cookie(
    checkout: str, checkout_shop: str, browser: aiohttp.ClientSession
) -> None:
    answer = await buy(browser, checkout_shop, {"product": "stand"})
    token = session_token(answer.headers["Location"])
    summary = await json_of(
        browser, f"{checkout}/checkout/session", **{"X-Checkout-Session": token}
    )
    reference = summary["orderReference"]
    order = (await json_of(browser, f"{checkout}/merchant/orders/{reference}", **MERCHANT_AUTH))[
        "order"
    ]
    cookie = browser.cookie_jar.filter_cookies(URL(checkout_shop))[CUSTOMER_COOKIE]
    assert order["customerReference"] == cookie.value


async def test_a_refused_api_key_is_a_clean_page_naming_the_variable(
    checkout: str, browser: aiohttp.ClientSession
) -> None:
    config = shop_config(checkout, api_key="not-a-merchant-key")
    server = await serve_shop(config)
    try:
        answer = await buy(browser, str(server.make_url("")).rstrip("/"), {"product": "stand"})
    finally:
        await server.close()
    assert answer.status == 502
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "<h1>The checkout refused the demo shop&#x27;s API key</h1>" in answer.text
    assert "DEMO_SHOP_API_KEY" in answer.text
