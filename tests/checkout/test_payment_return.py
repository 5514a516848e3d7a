"""The 3-D Secure return page: the challenge's Complete and Fail buttons, then our page."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sandbox.control_client import SandboxHandle
from tests.checkout.conftest import (
    CHALLENGE,
    AuthorizeConsumer,
    order_body,
    outbox_of,
    start_checkout,
    transitions_of,
)
from tests.settings import Settings

Client = TestClient[web.Request, web.Application]
CASCADE = "4000002760003184"


async def challenged_order(checkout: Client, sandbox: SandboxHandle, card: str) -> dict[str, Any]:
    body = await order_body(checkout, sandbox, card)
    answer = await (await checkout.post("/checkout/place-order", json=body)).json()
    assert answer["actionRequired"] == "3ds", answer
    return answer


def posted_message(page: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="threeds-result">(.*?)</script>', page)
    assert match is not None, page
    message: dict[str, Any] = json.loads(match.group(1))
    return message


@pytest.mark.parametrize("card", [CHALLENGE, CASCADE])
async def test_a_completed_challenge_returns_to_a_page_that_reports_authorized(
    card: str,
    checkout: Client,
    checkout_settings: Settings,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    answer = await challenged_order(checkout, sandbox, card)
    location = await sandbox.answer_challenge(answer["executionId"], complete=True)
    expected = f"{checkout_settings.public_base_url}/payment-return/{answer['executionId']}"
    assert location == expected
    response = await checkout.session.get(location, headers={"Accept": "text/html"})
    page = await response.text()
    assert response.status == 200
    assert response.content_type == "text/html"
    assert "Payment authorized" in page
    assert posted_message(page) == {
        "type": "threeds:complete",
        "orderReference": answer["orderReference"],
        "status": "authorized",
        "executionId": answer["executionId"],
        "reason": None,
    }
    assert "target.postMessage(message, window.location.origin)" in page
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in csp
    assert await transitions_of(sessions, answer["orderReference"]) == [
        ("created", "authorizing", "place_order"),
        ("authorizing", "action_required", "poll"),
        ("action_required", "paid", "return"),
    ]
    assert await outbox_of(sessions, answer["orderReference"]) == [
        "order.action_required",
        "order.paid",
    ]


async def test_a_failed_challenge_returns_to_a_page_that_reports_failed(
    checkout: Client, sandbox: SandboxHandle, authorize_consumer: AuthorizeConsumer
) -> None:
    answer = await challenged_order(checkout, sandbox, CHALLENGE)
    location = await sandbox.answer_challenge(answer["executionId"], complete=False)
    response = await checkout.session.get(location)
    page = await response.text()
    assert "Payment failed" in page
    assert "PayerAuthenticationFailed" in page
    assert posted_message(page)["status"] == "failed"
    order = await (await checkout.get(f"/orders/{answer['orderReference']}")).json()
    assert order["status"] == "payment_failed"
    assert order["confirmedBy"] == "return"


async def test_the_return_page_answers_json_when_asked(
    checkout: Client, sandbox: SandboxHandle, authorize_consumer: AuthorizeConsumer
) -> None:
    answer = await challenged_order(checkout, sandbox, CHALLENGE)
    location = await sandbox.answer_challenge(answer["executionId"], complete=True)
    response = await checkout.session.get(location, headers={"Accept": "application/json"})
    assert response.status == 200
    assert await response.json() == {
        "type": "threeds:complete",
        "orderReference": answer["orderReference"],
        "status": "authorized",
        "executionId": answer["executionId"],
        "reason": None,
    }


async def test_an_unknown_execution_id_is_not_found(checkout: Client) -> None:
    await start_checkout(checkout)
    response = await checkout.get(
        "/payment-return/no-such-execution", headers={"Accept": "application/json"}
    )
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


async def test_an_unknown_order_reference_is_not_found(checkout: Client) -> None:
    await start_checkout(checkout)
    response = await checkout.get("/orders/no-such-order")
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"
