"""The demo ``make run`` starts, in headless Chromium: from the shop's Buy to the final page."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from tests.browser.backend import merchant_order, set_sandbox_faults
from tests.browser.checkout_page import (
    CHALLENGE,
    DECLINE,
    FRICTIONLESS,
    Card,
    answer_challenge,
    buy,
    enter_card,
    future_expiry,
    place_order,
    screenshot,
    sent_requests,
    shopper_order,
    shown_amount,
    wait_for_checkout_error,
    wait_for_final_confirmation,
)
from tests.run.stack import RunningStack

pytestmark = pytest.mark.browser

# What reconciles an order to its final state, as ingress/static/confirmation.js words it.
CONFIRMING_CAUSES = {
    "webhook": "the Payrails webhook",
    "poll": "the checkout poll of the execution",
    "return": "the 3-D Secure return page",
    "sweep": "the sweeper (periodic re-check)",
}
SHOP_PRICE = "129.90 EUR"  # the headphones, in demoshop/catalogue.py


def assert_cause_shown(chrome: Chrome, cause: str, order: dict[str, Any]) -> None:
    """What confirmed the order: a reconciling cause, the API's, and named on the page."""
    assert cause in CONFIRMING_CAUSES, cause
    assert cause == order["confirmedBy"]
    shown = chrome.find_element(By.ID, "confirmed-by").text.strip()
    assert shown, "the confirmation page shows nothing for what confirmed the order"
    assert shown == CONFIRMING_CAUSES[cause]


def assert_final(
    chrome: Chrome, demo: RunningStack, reference: str, status: str, cause: str
) -> dict[str, Any]:
    """The page's final status is the order's, as the shop and the shopper read it."""
    order = merchant_order(demo, reference)
    assert order["status"] == status
    assert order["amount"] == {"value": "129.90", "currency": "EUR"}
    assert_cause_shown(chrome, cause, shopper_order(chrome, reference))
    return order


def checkout_with(chrome: Chrome, demo: RunningStack, number: str) -> str:
    """Buy the headphones in the demo shop and place the order with this card; the reference."""
    reference = buy(chrome, demo.urls["Demo shop"]).reference
    enter_card(chrome, Card(number, future_expiry()))
    place_order(chrome)
    return reference


def test_buy_in_the_demo_shop_lands_on_the_storefront_at_the_shops_price(
    chrome: Chrome, demo: RunningStack
) -> None:
    purchase = buy(chrome, demo.urls["Demo shop"])
    screenshot(chrome, "storefront-from-the-shop")
    assert purchase.shop_price == SHOP_PRICE
    # The checkout link's token went into the cookie: the address bar holds no session.
    assert chrome.current_url == demo.urls["Storefront"]
    assert shown_amount(chrome) == purchase.shop_price
    assert chrome.find_element(By.ID, "order-reference").text == purchase.reference
    order = merchant_order(demo, purchase.reference)
    assert order["amount"] == {"value": "129.90", "currency": "EUR"}
    assert order["status"] == "created"


def test_the_checkout_session_cookie_is_out_of_the_page_scripts_reach(
    chrome: Chrome, demo: RunningStack
) -> None:
    buy(chrome, demo.urls["Demo shop"])
    cookie = chrome.get_cookie("checkout_session")
    assert cookie is not None, chrome.get_cookies()
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Lax", "/")
    assert "checkout_session" not in chrome.execute_script("return document.cookie")


def test_frictionless_card_ends_paid_on_the_confirmation_page(
    chrome: Chrome, demo: RunningStack
) -> None:
    reference = checkout_with(chrome, demo, FRICTIONLESS)
    status, cause = wait_for_final_confirmation(chrome, reference)
    screenshot(chrome, "frictionless-paid")
    assert status == "paid"
    assert chrome.find_element(By.ID, "order-total").text == SHOP_PRICE
    assert_final(chrome, demo, reference, status, cause)


def test_completed_challenge_in_the_modal_ends_paid(chrome: Chrome, demo: RunningStack) -> None:
    reference = checkout_with(chrome, demo, CHALLENGE)
    answer_challenge(chrome, "complete")
    status, cause = wait_for_final_confirmation(chrome, reference)
    screenshot(chrome, "threeds-completed-paid")
    assert status == "paid"
    assert_final(chrome, demo, reference, status, cause)


def test_failed_challenge_in_the_modal_ends_payment_failed(
    chrome: Chrome, demo: RunningStack
) -> None:
    reference = checkout_with(chrome, demo, CHALLENGE)
    answer_challenge(chrome, "fail")
    status, cause = wait_for_final_confirmation(chrome, reference)
    screenshot(chrome, "threeds-failed")
    assert status == "payment_failed"
    order = assert_final(chrome, demo, reference, status, cause)
    assert order["failureReason"] == "PayerAuthenticationFailed"


def test_declined_card_shows_the_decline_on_the_checkout_page(
    chrome: Chrome, demo: RunningStack
) -> None:
    reference = checkout_with(chrome, demo, DECLINE)
    error = wait_for_checkout_error(chrome)
    screenshot(chrome, "declined")
    order = merchant_order(demo, reference)
    assert "declined" in error
    assert reference in error
    assert order["status"] == "payment_failed"
    assert order["failureReason"] == "InsufficientBalance"


def test_after_a_decline_another_card_pays_the_same_order(
    chrome: Chrome, demo: RunningStack
) -> None:
    """The page shows the decline; the shopper types another card and the same order is paid."""
    reference = checkout_with(chrome, demo, DECLINE)
    error = wait_for_checkout_error(chrome)
    screenshot(chrome, "declined-before-retry")
    assert "declined" in error
    assert "another card" in error
    assert merchant_order(demo, reference)["status"] == "payment_failed"

    enter_card(chrome, Card(FRICTIONLESS, future_expiry()), replace=True)
    place_order(chrome)
    status, cause = wait_for_final_confirmation(chrome, reference)
    screenshot(chrome, "paid-with-another-card")
    assert status == "paid"
    order = assert_final(chrome, demo, reference, status, cause)
    assert order["failureReason"] is None


def test_card_data_only_ever_goes_to_the_payrails_origin(
    chrome: Chrome, demo: RunningStack
) -> None:
    sent_requests(chrome)  # drop what earlier tests logged
    reference = checkout_with(chrome, demo, FRICTIONLESS)
    _, cause = wait_for_final_confirmation(chrome, reference)
    requests = sent_requests(chrome)
    assert_cause_shown(chrome, cause, shopper_order(chrome, reference))
    pan = FRICTIONLESS.replace(" ", "")
    sandbox = urlsplit(demo.urls["Payrails sandbox"]).netloc
    carrying_pan = {urlsplit(r["url"]).netloc for r in requests if pan in r["url"] + r["body"]}
    assert carrying_pan == {sandbox}


def test_an_invalid_card_is_highlighted_and_never_leaves_the_browser(
    chrome: Chrome, demo: RunningStack
) -> None:
    sent_requests(chrome)  # drop what earlier tests logged
    buy(chrome, demo.urls["Demo shop"])
    enter_card(chrome, Card("4242 4242 4242 4241", future_expiry()))
    place_order(chrome)
    error = wait_for_checkout_error(chrome)
    screenshot(chrome, "invalid-card")
    assert error == "Check the highlighted card details"
    pan = "4242424242424241"
    assert not [r for r in sent_requests(chrome) if pan in r["url"] + r["body"]]


def test_place_order_again_after_payrails_was_down_pays_the_same_order(
    chrome: Chrome, demo: RunningStack
) -> None:
    """The second click tokenizes the card again: the same order takes the new instrument."""
    set_sandbox_faults(demo, {"endpoints": {"create_execution": {"error_rate": 1}}})
    try:
        reference = checkout_with(chrome, demo, FRICTIONLESS)
        error = wait_for_checkout_error(chrome)
    finally:
        set_sandbox_faults(demo, {})
    assert "retry" in error
    assert chrome.execute_script("return window.currentOrderReference") == reference
    assert merchant_order(demo, reference)["status"] == "created"
    place_order(chrome)
    status, cause = wait_for_final_confirmation(chrome, reference)
    screenshot(chrome, "retried-after-payrails-down")
    assert status == "paid"
    assert_final(chrome, demo, reference, status, cause)
