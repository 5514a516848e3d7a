"""What a shopper does on the demo storefront, step by step, with explicit waits only."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

WAIT_SECONDS = 30
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"

FRICTIONLESS = "4242 4242 4242 4242"
CHALLENGE = "4000 0000 0000 3220"
DECLINE = "4000 0000 0000 9995"


def wait(driver: WebDriver) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, WAIT_SECONDS)


def future_expiry() -> str:
    """MMYY three years ahead: typed as digits, the field formats it."""
    return f"12{(datetime.now(UTC).year + 3) % 100:02d}"


@dataclass(frozen=True, slots=True)
class Card:
    number: str
    expiry: str
    cvv: str = "123"


def open_checkout(driver: WebDriver, storefront_url: str) -> str:
    """Load the checkout page until Place order is usable; the new order's reference."""
    driver.get(storefront_url)
    wait(driver).until(ec.element_to_be_clickable((By.ID, "place-order")))
    return str(driver.execute_script("return window.currentOrderReference"))


def type_into_field(driver: WebDriver, mount_id: str, text: str) -> None:
    """Type into the input of the Secure Fields iframe mounted at ``#mount_id``."""
    frame = (By.CSS_SELECTOR, f"#{mount_id} iframe")
    wait(driver).until(ec.frame_to_be_available_and_switch_to_it(frame))
    try:
        wait(driver).until(ec.element_to_be_clickable((By.ID, "field"))).send_keys(text)
    finally:
        driver.switch_to.default_content()


def enter_card(driver: WebDriver, card: Card) -> None:
    type_into_field(driver, "card-number", card.number)
    type_into_field(driver, "card-expiry", card.expiry)
    type_into_field(driver, "card-cvv", card.cvv)


def place_order(driver: WebDriver) -> None:
    driver.find_element(By.ID, "place-order").click()


def answer_challenge(driver: WebDriver, button_id: str) -> None:
    """In the 3-D Secure modal, press the sandbox's Complete or Fail button."""
    wait(driver).until(ec.visibility_of_element_located((By.ID, "threeds-modal")))
    wait(driver).until(ec.frame_to_be_available_and_switch_to_it((By.ID, "threeds-iframe")))
    try:
        wait(driver).until(ec.element_to_be_clickable((By.ID, button_id))).click()
    finally:
        driver.switch_to.default_content()


def wait_for_final_confirmation(driver: WebDriver, reference: str) -> tuple[str, str]:
    """On the confirmation page, wait for a final status with its cause; (status, cause)."""
    wait(driver).until(ec.url_contains(f"/order-confirmation/{reference}"))
    wait(driver).until(
        ec.text_to_be_present_in_element((By.ID, "live-note"), "This order is final.")
    )
    status = driver.find_element(By.ID, "order-status").get_attribute("data-status")
    cause = driver.find_element(By.ID, "confirmed-by").get_attribute("data-cause")
    return str(status), str(cause)


def wait_for_checkout_error(driver: WebDriver) -> str:
    """The error the checkout page shows, once it shows one."""
    return str(wait(driver).until(ec.visibility_of_element_located((By.ID, "checkout-error"))).text)


def screenshot(driver: WebDriver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"Chromium could not write {path.name}"
    assert path.is_file(), f"no screenshot at {path.name}"
    assert path.stat().st_size > 0, f"the screenshot {path.name} is empty"


def sent_requests(driver: Chrome) -> list[dict[str, Any]]:
    """Every request the browser sent since the last call: url, method and body (if any)."""
    requests = []
    get_log: Callable[[str], list[dict[str, Any]]] = driver.get_log  # untyped in selenium
    for entry in get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            request = message["params"]["request"]
            requests.append(
                {"url": request["url"], "method": request["method"], "body": _body(request)}
            )
    return requests


def _body(request: dict[str, Any]) -> str:
    if request.get("postData"):
        return str(request["postData"])
    entries = request.get("postDataEntries") or []
    return "".join(base64.b64decode(e.get("bytes", "")).decode(errors="replace") for e in entries)
