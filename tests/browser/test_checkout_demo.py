"""The demo storefront in headless Chromium: from typing the card to the final page, per flow."""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import urlsplit

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from tests.browser.checkout_page import (
    CHALLENGE,
    DECLINE,
    FRICTIONLESS,
    Card,
    answer_challenge,
    enter_card,
    future_expiry,
    open_checkout,
    place_order,
    screenshot,
    sent_requests,
    wait_for_checkout_error,
    wait_for_final_confirmation,
)
from tests.run.stack import RunningStack, get_json

pytestmark = pytest.mark.browser

# What reconciles an order to its final state, as ingress/static/confirmation.js words it.
CONFIRMING_CAUSES = {
    "webhook": "the Payrails webhook",
    "poll": "the checkout poll of the execution",
    "return": "the 3-D Secure return page",
    "sweep": "the sweeper (periodic re-check)",
}


def order_via_api(demo: RunningStack, reference: str) -> dict[str, object]:
    status, order = get_json(f"{demo.urls['Checkout API']}/orders/{reference}")
    assert status == 200, order
    return dict(order)


def set_sandbox_faults(demo: RunningStack, faults: dict[str, object]) -> None:
    request = urllib.request.Request(
        f"{demo.urls['Payrails sandbox']}/_sandbox/faults",
        data=json.dumps(faults).encode(),
        headers={"Content-Type": "application/json"},
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def assert_cause_shown(chrome: Chrome, cause: str, order: dict[str, object]) -> None:
    """What confirmed the order: a reconciling cause, the API's, and named on the page."""
    assert cause in CONFIRMING_CAUSES, cause
    assert cause == order["confirmedBy"]
    shown = chrome.find_element(By.ID, "confirmed-by").text.strip()
    assert shown, "the confirmation page shows nothing for what confirmed the order"
    assert shown == CONFIRMING_CAUSES[cause]


def checkout_with(chrome: Chrome, demo: RunningStack, number: str) -> str:
    reference = open_checkout(chrome, demo.urls["Storefront"])
    enter_card(chrome, Card(number, future_expiry()))
    place_order(chrome)
    return reference


def test_frictionless_card_ends_paid_on_the_confirmation_page(
    chrome: Chrome, demo: RunningStack
) -> None:
    reference = checkout_with(chrome, demo, FRICTIONLESS)
    status, cause = wait_for_final_confirmation(chrome, reference)
    screenshot(chrome, "frictionless-paid")
    order = order_via_api(demo, reference)
    assert (status, order["status"]) == ("paid", "paid")
    assert_cause_shown(chrome, cause, order)


def test_completed_challenge_in_the_modal_ends_paid(chrome: Chrome, demo: RunningStack) -> None:
    reference = checkout_with(chrome, demo, CHALLENGE)
    answer_challenge(chrome, "complete")
    status, cause = wait_for_final_confirmation(chrome, reference)
    screenshot(chrome, "threeds-completed-paid")
    order = order_via_api(demo, reference)
    assert (status, order["status"]) == ("paid", "paid")
    assert_cause_shown(chrome, cause, order)


def test_failed_challenge_in_the_modal_ends_payment_failed(
    chrome: Chrome, demo: RunningStack
) -> None:
    reference = checkout_with(chrome, demo, CHALLENGE)
    answer_challenge(chrome, "fail")
    status, cause = wait_for_final_confirmation(chrome, reference)
    screenshot(chrome, "threeds-failed")
    order = order_via_api(demo, reference)
    assert (status, order["status"]) == ("payment_failed", "payment_failed")
    assert order["failureReason"] == "PayerAuthenticationFailed"
    assert_cause_shown(chrome, cause, order)


def test_declined_card_shows_the_decline_on_the_checkout_page(
    chrome: Chrome, demo: RunningStack
) -> None:
    reference = checkout_with(chrome, demo, DECLINE)
    error = wait_for_checkout_error(chrome)
    screenshot(chrome, "declined")
    order = order_via_api(demo, reference)
    assert "declined" in error
    assert reference in error
    assert order["status"] == "payment_failed"
    assert order["failureReason"] == "InsufficientBalance"


def test_card_data_only_ever_goes_to_the_payrails_origin(
    chrome: Chrome, demo: RunningStack
) -> None:
    sent_requests(chrome)  # drop what earlier tests logged
    reference = checkout_with(chrome, demo, FRICTIONLESS)
    _, cause = wait_for_final_confirmation(chrome, reference)
    requests = sent_requests(chrome)
    assert_cause_shown(chrome, cause, order_via_api(demo, reference))
    pan = FRICTIONLESS.replace(" ", "")
    sandbox = urlsplit(demo.urls["Payrails sandbox"]).netloc
    carrying_pan = {urlsplit(r["url"]).netloc for r in requests if pan in r["url"] + r["body"]}
    assert carrying_pan == {sandbox}


def test_an_invalid_card_is_highlighted_and_never_leaves_the_browser(
    chrome: Chrome, demo: RunningStack
) -> None:
    sent_requests(chrome)  # drop what earlier tests logged
    open_checkout(chrome, demo.urls["Storefront"])
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
    assert order_via_api(demo, reference)["status"] == "created"
    place_order(chrome)
    status, cause = wait_for_final_confirmation(chrome, reference)
    screenshot(chrome, "retried-after-payrails-down")
    order = order_via_api(demo, reference)
    assert (status, order["status"]) == ("paid", "paid")
    assert_cause_shown(chrome, cause, order)
