"""Behind the browser's back: the merchant API (as the shop calls it) and the sandbox's controls."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from typing import Any

from shared.config import SANDBOX_MERCHANT_API_KEY
from tests.run.stack import RunningStack, get_json


def _call(
    method: str, url: str, body: object | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """One JSON request: the status and the decoded body (None when not JSON)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={
            "Accept": "application/json",
            "Content-Type": "application/json",
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def _merchant_headers(stack: RunningStack) -> dict[str, str]:
    """The first of the stack's merchant API keys, as the demo shop sends it."""
    keys = stack.env.get("MERCHANT_API_KEYS", "") or SANDBOX_MERCHANT_API_KEY
    return {"Authorization": f"Bearer {keys.split(',')[0].strip()}"}


def merchant_order(stack: RunningStack, reference: str) -> dict[str, Any]:
    """The order as its commerce backend reads it: GET /merchant/orders/{reference}."""
    status, body = _call(
        "GET",
        f"{stack.urls['Checkout API']}/merchant/orders/{reference}",
        headers=_merchant_headers(stack),
    )
    assert status == 200, body
    return dict(body["order"])


def create_order(stack: RunningStack, value: str, currency: str = "EUR") -> tuple[str, str]:
    """A new order through the merchant API, as a shop creates one: (reference, checkout URL)."""
    reference = f"browser-{uuid.uuid4().hex}"
    body = {
        "orderReference": reference,
        "amount": {"value": value, "currency": currency},
        "customerReference": f"customer-{uuid.uuid4().hex[:12]}",
    }
    status, answer = _call(
        "POST",
        f"{stack.urls['Checkout API']}/merchant/orders",
        body,
        headers=_merchant_headers(stack),
    )
    assert status == 201, answer
    return reference, str(answer["checkoutSession"]["checkoutUrl"])


def set_sandbox_faults(stack: RunningStack, faults: dict[str, object]) -> None:
    status, body = _call("PUT", f"{stack.urls['Payrails sandbox']}/_sandbox/faults", faults)
    assert status == 200, body


def sandbox_stats(stack: RunningStack) -> dict[str, Any]:
    """What the sandbox counted so far: executions created, authorize attempts per execution."""
    status, body = get_json(f"{stack.urls['Payrails sandbox']}/_sandbox/stats")
    assert status == 200, body
    return dict(body)


def checkout_requests(stack: RunningStack, endpoint: str) -> list[dict[str, Any]]:
    """The requests the stack's checkout logged for one endpoint (its route name), in order."""
    logged = []
    for line in list(stack.lines):
        name, _, text = line.partition("| ")
        if name.strip() != "checkout" or not text.startswith("{"):
            continue
        try:
            entry = json.loads(text)
        except ValueError:
            continue
        if entry.get("event") == "checkout.request" and entry.get("endpoint") == endpoint:
            logged.append(entry)
    return logged
