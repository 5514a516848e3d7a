"""3-D Secure when the challenge page is another site than the storefront, as a bank's is.

The challenge frame comes back to ``/payment-return/{executionId}`` through a cross-site
navigation, which carries no SameSite cookie: that page answers 404 without naming the order and
tells the storefront it returned; the storefront, with its cookie, then asks for the outcome.
"""

from __future__ import annotations

import pytest
from selenium.webdriver import Chrome

from tests.browser.backend import checkout_requests, merchant_order
from tests.browser.checkout_page import (
    CHALLENGE,
    Card,
    answer_challenge,
    buy,
    enter_card,
    future_expiry,
    place_order,
    screenshot,
    shopper_order,
    wait_for_final_confirmation,
)
from tests.run.stack import RunningStack

pytestmark = pytest.mark.browser


def test_completed_challenge_on_another_site_returns_without_the_cookie_and_ends_paid(
    chrome: Chrome, cross_site_demo: RunningStack
) -> None:
    purchase = buy(chrome, cross_site_demo.urls["Demo shop"])
    enter_card(chrome, Card(CHALLENGE, future_expiry()))
    place_order(chrome)
    answer_challenge(chrome, "complete")
    status, _ = wait_for_final_confirmation(chrome, purchase.reference)
    screenshot(chrome, "cross-site-threeds-paid")
    returns = [r["status"] for r in checkout_requests(cross_site_demo, "payment_return")]
    # The frame's return, without the cookie, then the storefront's own request, with it.
    assert returns == [404, 200]
    assert status == "paid"
    assert merchant_order(cross_site_demo, purchase.reference)["status"] == "paid"
    assert shopper_order(chrome, purchase.reference)["status"] == "paid"
