"""The demo shop as a browser sees it: the product page, its cookie, and which Buy it refuses."""

from __future__ import annotations

import aiohttp
from yarl import URL

from demoshop.app import CUSTOMER_COOKIE
from tests.demoshop.merchant_standin import MerchantApiStandIn
from tests.demoshop.pages import buy, get


async def test_the_product_page_lists_each_product_at_the_catalogue_price(
    shop: str, browser: aiohttp.ClientSession
) -> None:
    page = await get(browser, f"{shop}/")
    assert page.status == 200
    assert "Noise-cancelling headphones" in page.text
    assert "129.90 EUR" in page.text
    assert '<input type="hidden" name="product" value="headphones">' in page.text


async def test_the_product_page_forbids_scripts_and_framing(
    shop: str, browser: aiohttp.ClientSession
) -> None:
    policy = (await get(browser, f"{shop}/")).headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy


async def test_each_buy_is_a_new_order_for_the_same_demo_customer(
    shop: str, browser: aiohttp.ClientSession, merchant_api: MerchantApiStandIn
) -> None:
    await get(browser, f"{shop}/")
    await buy(browser, shop, {"product": "headphones"})
    await buy(browser, shop, {"product": "headphones"})
    first, second = merchant_api.received
    assert first["orderReference"] != second["orderReference"]
    cookie = browser.cookie_jar.filter_cookies(URL(shop))[CUSTOMER_COOKIE]
    assert first["customerReference"] == second["customerReference"] == cookie.value


async def test_the_demo_customer_cookie_is_http_only_and_same_site_strict(
    shop: str, browser: aiohttp.ClientSession
) -> None:
    set_cookie = (await get(browser, f"{shop}/")).headers["Set-Cookie"]
    assert set_cookie.startswith(f"{CUSTOMER_COOKIE}=shopper-")
    assert "HttpOnly" in set_cookie
    assert "SameSite=Strict" in set_cookie


async def test_an_unknown_product_is_404_and_orders_nothing(
    shop: str, browser: aiohttp.ClientSession, merchant_api: MerchantApiStandIn
) -> None:
    answer = await buy(browser, shop, {"product": "no-such-product"})
    assert answer.status == 404
    assert "No such product" in answer.text
    assert merchant_api.received == []


async def test_buy_from_another_origin_is_refused_and_orders_nothing(
    shop: str, browser: aiohttp.ClientSession, merchant_api: MerchantApiStandIn
) -> None:
    """Another port on the same host is the same site: SameSite alone would let it through."""
    answer = await buy(browser, shop, {"product": "headphones"}, origin="http://127.0.0.1:1")
    assert answer.status == 403
    assert merchant_api.received == []


async def test_buy_without_origin_or_referer_is_refused(
    shop: str, browser: aiohttp.ClientSession, merchant_api: MerchantApiStandIn
) -> None:
    answer = await buy(browser, shop, {"product": "headphones"}, origin=None)
    assert answer.status == 403
    assert merchant_api.received == []


async def test_buy_without_origin_but_with_the_shops_referer_is_accepted(
    shop: str, browser: aiohttp.ClientSession
) -> None:
    answer = await buy(browser, shop, {"product": "stand"}, origin=None, referer=f"{shop}/")
    assert answer.status == 303
