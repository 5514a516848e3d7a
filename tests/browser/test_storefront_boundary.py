"""What a shopper's browser cannot do: pay another price, or see an order without its session."""

from __future__ import annotations

import json
from typing import Any

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from tests.browser.backend import create_order, merchant_order, sandbox_stats
from tests.browser.checkout_page import (
    FRICTIONLESS,
    Card,
    buy,
    enter_card,
    fetch_from_page,
    forget_cookies,
    future_expiry,
    place_order,
    screenshot,
    sent_requests,
    wait,
    wait_for_checkout_error,
)
from tests.run.stack import RunningStack

pytestmark = pytest.mark.browser

SHOP_AMOUNT = {"value": "129.90", "currency": "EUR"}  # the headphones, in demoshop/catalogue.py
TAMPERED_AMOUNT = {"value": "0.01", "currency": "EUR"}

# Rewrites the storefront's own place-order request in flight, as a shopper with the browser's
# developer tools can: the same tokenized card, the same order, a price of 0.01.
REWRITE_PLACE_ORDER_AMOUNT = """
const amount = arguments[0]
const realFetch = window.fetch.bind(window)
window.fetch = (url, init) => {
  if (String(url).endsWith('/checkout/place-order') && init && init.body) {
    init = { ...init, body: JSON.stringify({ ...JSON.parse(init.body), amount }) }
  }
  return realFetch(url, init)
}
"""


def place_order_bodies(chrome: Chrome) -> list[dict[str, Any]]:
    """The bodies of the place-order requests the browser sent since the last look."""
    sent = sent_requests(chrome)
    return [json.loads(r["body"]) for r in sent if r["url"].endswith("/checkout/place-order")]


def assert_not_paid_at_all(demo: RunningStack, reference: str, before: dict[str, Any]) -> None:
    """The order still has the shop's amount, and nothing was authorized for it at all."""
    order = merchant_order(demo, reference)
    assert order["amount"] == SHOP_AMOUNT
    assert (order["status"], order["executionId"]) == ("created", None)
    after = sandbox_stats(demo)
    assert after["executionsCreated"] == before["executionsCreated"]
    assert after["authorizeAttempts"] == before["authorizeAttempts"]


def test_amount_edited_in_the_page_is_refused_and_the_order_keeps_the_shops_price(
    chrome: Chrome, demo: RunningStack
) -> None:
    reference = buy(chrome, demo.urls["Demo shop"]).reference
    enter_card(chrome, Card(FRICTIONLESS, future_expiry()))
    chrome.execute_script(
        "const el = document.getElementById('order-amount');"
        "el.dataset.value = '0.01'; el.textContent = '0.01 EUR'"
    )
    before = sandbox_stats(demo)
    sent_requests(chrome)  # drop what earlier steps logged
    place_order(chrome)
    error = wait_for_checkout_error(chrome)
    screenshot(chrome, "tampered-amount-refused")
    assert "the shop sets the price" in error
    assert [body["amount"] for body in place_order_bodies(chrome)] == [TAMPERED_AMOUNT]
    assert_not_paid_at_all(demo, reference, before)


def test_place_order_rewritten_to_another_amount_is_refused_and_nothing_is_authorized(
    chrome: Chrome, demo: RunningStack
) -> None:
    reference = buy(chrome, demo.urls["Demo shop"]).reference
    enter_card(chrome, Card(FRICTIONLESS, future_expiry()))
    chrome.execute_script(REWRITE_PLACE_ORDER_AMOUNT, TAMPERED_AMOUNT)
    before = sandbox_stats(demo)
    sent_requests(chrome)
    place_order(chrome)
    error = wait_for_checkout_error(chrome)
    screenshot(chrome, "rewritten-place-order-refused")
    assert "the shop sets the price" in error
    (body,) = place_order_bodies(chrome)
    assert body["amount"] == TAMPERED_AMOUNT
    assert (body["orderReference"], body["paymentMethodCode"]) == (reference, "card")
    assert body["paymentInstrumentId"]
    assert_not_paid_at_all(demo, reference, before)


def test_place_order_fetched_from_the_page_with_another_amount_is_409(
    chrome: Chrome, demo: RunningStack
) -> None:
    reference = buy(chrome, demo.urls["Demo shop"]).reference
    before = sandbox_stats(demo)
    status, problem = fetch_from_page(
        chrome,
        "/checkout/place-order",
        "POST",
        {
            "paymentInstrumentId": "instrument-from-the-page",
            "paymentMethodCode": "card",
            "amount": TAMPERED_AMOUNT,
            "orderReference": reference,
        },
    )
    assert (status, problem["error"]) == (409, "amount_mismatch"), problem
    assert_not_paid_at_all(demo, reference, before)


def test_storefront_without_a_checkout_session_shows_the_no_session_message(
    chrome: Chrome, demo: RunningStack
) -> None:
    forget_cookies(chrome)
    chrome.get(demo.urls["Storefront"])
    wait(chrome).until(ec.visibility_of_element_located((By.ID, "no-session")))
    screenshot(chrome, "no-session")
    assert "open the checkout from your shop" in chrome.find_element(By.ID, "no-session").text
    assert not chrome.find_element(By.ID, "place-order").is_enabled()
    assert chrome.find_element(By.ID, "order-amount").text == "…"
    assert not chrome.find_element(By.ID, "checkout-error").is_displayed()


def test_order_status_is_404_to_a_browser_without_the_orders_session(
    chrome: Chrome, demo: RunningStack
) -> None:
    reference = buy(chrome, demo.urls["Demo shop"]).reference
    assert fetch_from_page(chrome, f"/orders/{reference}")[0] == 200
    forget_cookies(chrome)
    status, problem = fetch_from_page(chrome, f"/orders/{reference}")
    assert (status, problem["error"]) == (404, "not_found"), problem
    chrome.get(f"{demo.urls['Storefront']}order-confirmation/{reference}")
    badge = (By.ID, "order-status")
    wait(chrome).until(ec.text_to_be_present_in_element_attribute(badge, "data-status", "not"))
    screenshot(chrome, "confirmation-without-session")
    assert chrome.find_element(*badge).get_attribute("data-status") == "not_found"
    assert chrome.find_element(By.ID, "headline").text == "We could not find this order."


def test_order_status_is_404_to_a_browser_holding_another_orders_session(
    chrome: Chrome, demo: RunningStack
) -> None:
    other, _ = create_order(demo, "59.00")
    buy(chrome, demo.urls["Demo shop"])
    status, problem = fetch_from_page(chrome, f"/orders/{other}")
    assert (status, problem["error"]) == (404, "not_found"), problem
    # The same answer as for an order that does not exist: the reference reveals nothing.
    missing = fetch_from_page(chrome, "/orders/no-such-order")
    assert (status, problem) == missing
