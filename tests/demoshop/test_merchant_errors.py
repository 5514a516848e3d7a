"""A merchant API that refuses, fails or does not answer: a readable page, never a traceback.

The stand-in plays the checkout here: the real one cannot be made to answer 409 to a fresh
reference, 5xx or nothing at all on demand (its refused API key: test_with_checkout.py).
"""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from tests.demoshop.conftest import serve_shop, shop_config
from tests.demoshop.merchant_standin import MerchantApiStandIn, problem
from tests.demoshop.pages import Answer, buy
from tests.ports import free_port


def assert_clean_page(answer: Answer, status: int, title: str) -> None:
    assert answer.status == status
    assert answer.headers["Content-Type"].startswith("text/html")
    assert f"<h1>{title}</h1>" in answer.text
    assert "Traceback" not in answer.text
    assert 'href="/"' in answer.text


async def test_an_order_conflict_is_a_clean_page_with_the_checkouts_detail(
    shop: str, browser: aiohttp.ClientSession, merchant_api: MerchantApiStandIn
) -> None:
    merchant_api.answer_with(problem(409, "order_conflict", "order demo-1 has other terms"))
    answer = await buy(browser, shop, {"product": "headphones"})
    assert_clean_page(answer, 502, "The checkout refused the order as a conflict")
    assert "order demo-1 has other terms" in answer.text


async def test_the_checkouts_error_detail_is_escaped(
    shop: str, browser: aiohttp.ClientSession, merchant_api: MerchantApiStandIn
) -> None:
    merchant_api.answer_with(problem(422, "invalid_request", "<script>alert(1)</script>"))
    answer = await buy(browser, shop, {"product": "headphones"})
    assert "<script>" not in answer.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in answer.text


@pytest.mark.parametrize("status", [500, 503])
async def test_a_checkout_server_error_is_a_clean_page(
    status: int, shop: str, browser: aiohttp.ClientSession, merchant_api: MerchantApiStandIn
) -> None:
    merchant_api.answer_with(problem(status, "internal", "Traceback (most recent call last)"))
    answer = await buy(browser, shop, {"product": "headphones"})
    assert_clean_page(answer, 502, "The checkout is unavailable")


async def test_a_checkout_that_does_not_answer_in_time_is_a_clean_page(
    shop: str, browser: aiohttp.ClientSession, merchant_api: MerchantApiStandIn
) -> None:
    merchant_api.hang()
    answer = await buy(browser, shop, {"product": "headphones"})
    assert_clean_page(answer, 504, "The checkout did not answer in time")


async def test_an_unreachable_checkout_is_a_clean_page(browser: aiohttp.ClientSession) -> None:
    server = await serve_shop(shop_config(f"http://127.0.0.1:{free_port()}"))
    try:
        answer = await buy(browser, str(server.make_url("")).rstrip("/"), {"product": "stand"})
    finally:
        await server.close()
    assert_clean_page(answer, 502, "The checkout could not be reached")


async def test_an_order_that_can_no_longer_be_paid_is_a_clean_page(
    shop: str, browser: aiohttp.ClientSession, merchant_api: MerchantApiStandIn
) -> None:
    merchant_api.answer_with(web.json_response({"order": {}, "checkoutSession": None}))
    answer = await buy(browser, shop, {"product": "headphones"})
    assert_clean_page(answer, 502, "This order can no longer be paid")
