"""What a shopper does on the demo storefront, step by step, with explicit waits only."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from selenium.common.exceptions import TimeoutException
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
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


@dataclass(frozen=True, slots=True)
class Purchase:
    """An order the demo shop created on Buy, and the price its product page showed."""

    reference: str
    shop_price: str


def _product(product: str) -> str:
    """XPath of the demo shop's product entry whose Buy form sells ``product``."""
    return f"//li[.//input[@name='product' and @value='{product}']]"


def buy(driver: WebDriver, shop_url: str, product: str = "headphones") -> Purchase:
    """Open the demo shop, press the product's Buy and wait for the storefront to be usable."""
    driver.get(shop_url)
    entry = _product(product)
    price = driver.find_element(By.XPATH, f"{entry}//*[@class='price']").text.strip()
    driver.find_element(By.XPATH, f"{entry}//form//button[@type='submit']").click()
    return Purchase(wait_for_checkout(driver), price)


def wait_for_checkout(driver: WebDriver) -> str:
    """Wait until the storefront shows its order and Place order is usable; the reference."""
    wait(driver).until(ec.element_to_be_clickable((By.ID, "place-order")))
    return str(driver.execute_script("return window.currentOrderReference"))


def shown_amount(driver: WebDriver) -> str:
    """The order's amount as the storefront shows it."""
    return str(driver.find_element(By.ID, "order-amount").text).strip()


def forget_cookies(driver: WebDriver) -> None:
    """Drop every cookie of the browser, the checkout session's included (it is HttpOnly)."""
    chrome: Any = driver  # execute_cdp_cmd is Chromium's own
    chrome.execute_cdp_cmd("Network.clearBrowserCookies", {})


_FETCH = """
const [path, method, body, done] = arguments
const init = { method, headers: { Accept: 'application/json' } }
if (body !== null) {
  init.headers['Content-Type'] = 'application/json'
  init.body = JSON.stringify(body)
}
window.fetch(path, init)
  .then(async response => done([response.status, await response.text()]))
  .catch(err => done([-1, String(err)]))
"""


def fetch_from_page(
    driver: WebDriver, path: str, method: str = "GET", body: object | None = None
) -> tuple[int, Any]:
    """``fetch`` from the page itself (its origin, its cookies): status and JSON body."""
    status, text = driver.execute_async_script(_FETCH, path, method, body)
    assert status != -1, f"fetch {path} failed in the page: {text}"
    try:
        return int(status), json.loads(text)
    except ValueError:
        return int(status), None


def shopper_order(driver: WebDriver, reference: str) -> dict[str, Any]:
    """The order as the shopper's browser reads it (GET /orders/{reference}, its session)."""
    status, order = fetch_from_page(driver, f"/orders/{reference}")
    assert status == 200, order
    return dict(order)


def type_into_field(driver: WebDriver, mount_id: str, text: str) -> None:
    """Type into the input of the Secure Fields iframe mounted at ``#mount_id``."""
    frame = (By.CSS_SELECTOR, f"#{mount_id} iframe")
    wait(driver).until(ec.frame_to_be_available_and_switch_to_it(frame))
    try:
        wait(driver).until(ec.element_to_be_clickable((By.ID, "field"))).send_keys(text)
    finally:
        driver.switch_to.default_content()


def enter_card(driver: WebDriver, card: Card, *, replace: bool = False) -> None:
    """Type the card into the Secure Fields; ``replace`` first empties what they hold."""
    prefix = Keys.CONTROL + "a" + Keys.NULL + Keys.DELETE if replace else ""
    type_into_field(driver, "card-number", prefix + card.number)
    type_into_field(driver, "card-expiry", prefix + card.expiry)
    type_into_field(driver, "card-cvv", prefix + card.cvv)


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
    try:
        wait(driver).until(ec.url_contains(f"/order-confirmation/{reference}"))
    except TimeoutException:
        raise AssertionError(
            f"never reached the confirmation page; still at {driver.current_url}; "
            f"page errors: {page_errors(driver)}"
        ) from None
    wait(driver).until(
        ec.text_to_be_present_in_element((By.ID, "live-note"), "This order is final.")
    )
    status = driver.find_element(By.ID, "order-status").get_attribute("data-status")
    cause = driver.find_element(By.ID, "confirmed-by").get_attribute("data-cause")
    return str(status), str(cause)


def page_errors(driver: WebDriver) -> list[str]:
    """The errors the browser reported since the last look (scripts, failed loads)."""
    chrome: Any = driver  # get_log is Chromium's own
    return [str(e["message"]) for e in chrome.get_log("browser") if e.get("level") == "SEVERE"]


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
