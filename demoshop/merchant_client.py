"""The checkout's merchant API as the demo shop calls it: create an order, get its checkout URL.

Every failure becomes a MerchantApiError whose title and detail a shopper page can show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from shared.config import Secret
from shared.money import Money

ORDERS_PATH = "/merchant/orders"


class MerchantApiError(Exception):
    """A merchant API call that did not give a checkout URL, in words for the shopper's page."""

    def __init__(
        self, title: str, detail: str, *, status: int | None = None, page_status: int = 502
    ) -> None:
        super().__init__(f"{title}: {detail}")
        self.title = title
        self.detail = detail
        self.status = status  # the merchant API's HTTP status; None when it never answered
        self.page_status = page_status  # what the demo shop answers the browser


@dataclass(frozen=True, slots=True)
class CreatedOrder:
    order_reference: str
    checkout_url: str


class MerchantClient:
    """POST /merchant/orders with the shop's API key; the session carries the timeouts."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: Secret) -> None:
        self._session = session
        self._url = base_url + ORDERS_PATH
        self._api_key = api_key

    async def create_order(self, reference: str, customer: str, price: Money) -> CreatedOrder:
        """Create the order at ``price``; its checkout session's URL, or MerchantApiError."""
        body = {
            "orderReference": reference,
            "amount": price.to_json(),
            "customerReference": customer,
        }
        headers = {"Authorization": f"Bearer {self._api_key.reveal()}"}
        try:
            async with self._session.post(self._url, json=body, headers=headers) as response:
                status, payload = response.status, _decode(await response.read())
        except TimeoutError as exc:
            raise MerchantApiError(
                "The checkout did not answer in time",
                "Creating the order took too long. Try again in a moment.",
                page_status=504,
            ) from exc
        except aiohttp.ClientError as exc:
            raise MerchantApiError(
                "The checkout could not be reached",
                f"No answer from {self._url} ({type(exc).__name__}). Is the checkout running, "
                "and does DEMO_SHOP_CHECKOUT_URL point at it?",
            ) from exc
        if status in (200, 201):
            return _created(reference, payload)
        raise _refused(status, payload, self._url)


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _created(reference: str, payload: Any) -> CreatedOrder:
    session = payload.get("checkoutSession", {}) if isinstance(payload, dict) else {}
    if session is None:
        raise MerchantApiError(
            "This order can no longer be paid",
            f"The checkout has order {reference} already, and it cannot be paid any more.",
            status=200,
        )
    url = session.get("checkoutUrl") if isinstance(session, dict) else None
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise MerchantApiError(
            "Unexpected answer from the checkout",
            "The order was accepted, but the answer held no checkout URL.",
        )
    return CreatedOrder(reference, url)


def _refused(status: int, payload: Any, url: str) -> MerchantApiError:
    detail = _problem_detail(payload)
    if status in (401, 403):
        title = "The checkout refused the demo shop's API key"
        detail = "Set DEMO_SHOP_API_KEY to one of the checkout's MERCHANT_API_KEYS."
    elif status == 404:
        title = "The checkout has no merchant API here"
        detail = f"{url} answered 404. Does DEMO_SHOP_CHECKOUT_URL point at the checkout?"
    elif status == 409:
        title = "The checkout refused the order as a conflict"
        detail = detail or "An order with this reference exists with other terms."
    elif status == 422:
        title = "The checkout refused the order's terms"
        detail = detail or "The order's terms are invalid."
    elif status >= 500:
        title = "The checkout is unavailable"
        detail = f"It answered {status}. Try again in a moment."
    else:
        title = "Unexpected answer from the checkout"
        detail = f"It answered {status}."
    return MerchantApiError(title, detail, status=status)


def _problem_detail(payload: Any) -> str:
    """The detail (or message) of a problem+json body; empty when there is none."""
    if not isinstance(payload, dict):
        return ""
    for key in ("detail", "message"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value
    return ""
