"""The shopper's boundary: a checkout session pays its own order, at the shop's price, only.

The commerce backend sets amount, currency and customer (merchant API); the storefront brings the
session and the tokenized card. Anything else it claims must match the session's order, and what
it may read is that order alone.
"""

from __future__ import annotations

from decimal import Decimal
from http.cookies import SimpleCookie
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ingress.checkout.shopper import COOKIE
from sandbox.control_client import SandboxHandle
from shared.messaging import Names
from tests.checkout.conftest import (
    FRICTIONLESS,
    MERCHANT_AUTH,
    AuthorizeConsumer,
    bound_session,
    client_init_answers,
    create_order,
    expire_session,
    idempotency_operations,
    init_holder,
    order_body,
    order_row,
    serve_checkout,
    session_header,
    session_token,
    start_checkout,
)
from tests.ports import free_port
from tests.settings import Settings
from tests.waiting import sample

Client = TestClient[web.Request, web.Application]
PROBLEM = "application/problem+json"
JSON = {"Accept": "application/json"}
HTML = {"Accept": "text/html"}


def session_refusals(reason: str) -> float:
    return sample("recon_checkout_session_refusals_total", reason=reason)


async def assert_untouched(
    sessions: async_sessionmaker[AsyncSession], sandbox: SandboxHandle, reference: str
) -> None:
    """The order is as the merchant created it: no execution, no Payrails call keyed for it."""
    order = await order_row(sessions, reference)
    assert (order.status, order.execution_id) == ("created", None)
    assert (order.amount_value, order.currency) == (Decimal("129.90"), "EUR")
    assert await idempotency_operations(sessions, reference) == []
    stats = await sandbox.stats()
    assert (stats["executionsCreated"], stats["authorizesExecuted"]) == (0, {})


async def paid_order(checkout: Client, sandbox: SandboxHandle) -> dict[str, Any]:
    """An order paid through the checkout: its place-order answer (reference, execution id)."""
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    answer: dict[str, Any] = await (await checkout.post("/checkout/place-order", json=body)).json()
    assert answer["status"] == "authorized", answer
    return answer


# --- what place-order and init take from the session's order -----------------------------------


async def test_a_tampered_price_is_refused_and_nothing_is_authorized(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    before = session_refusals("amount_mismatch")
    tampered = {**body, "amount": {"value": "0.01", "currency": "EUR"}}
    response = await checkout.post("/checkout/place-order", json=tampered)
    answer = await response.json(content_type=None)
    assert response.status == 409, answer
    assert response.content_type == PROBLEM
    assert answer["error"] == "amount_mismatch"
    assert answer["amount"] == {"value": "129.90", "currency": "EUR"}
    assert session_refusals("amount_mismatch") == before + 1
    await assert_untouched(sessions, sandbox, body["orderReference"])
    merchant = await checkout.get(
        f"/merchant/orders/{body['orderReference']}", headers=MERCHANT_AUTH
    )
    assert (await merchant.json())["order"]["amount"] == {"value": "129.90", "currency": "EUR"}


async def test_place_order_without_a_session_is_401(
    checkout: Client, sandbox: SandboxHandle, sessions: async_sessionmaker[AsyncSession]
) -> None:
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    checkout.session.cookie_jar.clear()
    before = session_refusals("missing")
    response = await checkout.post("/checkout/place-order", json=body)
    answer = await response.json(content_type=None)
    assert response.status == 401, answer
    assert response.content_type == PROBLEM
    assert (answer["status"], answer["error"]) == (401, "checkout_session_required")
    assert session_refusals("missing") == before + 1
    await assert_untouched(sessions, sandbox, body["orderReference"])


async def test_place_order_with_an_expired_session_is_401(
    checkout: Client, sandbox: SandboxHandle, sessions: async_sessionmaker[AsyncSession]
) -> None:
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    await expire_session(sessions, session_token(checkout))
    before = session_refusals("invalid")
    response = await checkout.post("/checkout/place-order", json=body)
    answer = await response.json(content_type=None)
    assert response.status == 401, answer
    assert answer["error"] == "checkout_session_required"
    assert session_refusals("invalid") == before + 1
    await assert_untouched(sessions, sandbox, body["orderReference"])


async def test_a_session_replayed_for_another_order_is_403(
    checkout: Client, sandbox: SandboxHandle, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Order A's session, with order B's reference in the body: B is not A's to pay."""
    body_a = await order_body(checkout, sandbox, FRICTIONLESS)
    reference_b, _ = await create_order(checkout)
    response = await checkout.post(
        "/checkout/place-order", json={**body_a, "orderReference": reference_b}
    )
    answer = await response.json(content_type=None)
    assert response.status == 403, answer
    assert answer["error"] == "order_mismatch"
    await assert_untouched(sessions, sandbox, reference_b)
    await assert_untouched(sessions, sandbox, body_a["orderReference"])


async def test_place_order_for_another_customer_is_409(
    checkout: Client, sandbox: SandboxHandle, sessions: async_sessionmaker[AsyncSession]
) -> None:
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    response = await checkout.post(
        "/checkout/place-order", json={**body, "customerReference": "someone-else"}
    )
    answer = await response.json(content_type=None)
    assert response.status == 409, answer
    assert answer["error"] == "customer_mismatch"
    await assert_untouched(sessions, sandbox, body["orderReference"])


async def test_init_with_an_empty_body_is_for_the_order_s_customer(
    checkout: Client, sandbox: SandboxHandle
) -> None:
    await start_checkout(checkout, customer="shopper-7")
    # As a browser's or curl's bare POST: no body, no Content-Type.
    response = await checkout.post("/payments/init", skip_auto_headers={"Content-Type"})
    payload = await response.json()
    assert response.status == 200, payload
    assert init_holder(payload) == "shopper-7"
    assert client_init_answers(sandbox) == [payload]


async def test_init_for_another_customer_is_409_without_calling_payrails(
    checkout: Client, sandbox: SandboxHandle
) -> None:
    await start_checkout(checkout, customer="shopper-7")
    before = session_refusals("customer_mismatch")
    response = await checkout.post("/payments/init", json={"holderReference": "shopper-8"})
    answer = await response.json(content_type=None)
    assert response.status == 409, answer
    assert response.content_type == PROBLEM
    assert answer["error"] == "customer_mismatch"
    assert session_refusals("customer_mismatch") == before + 1
    assert client_init_answers(sandbox) == []


async def test_init_without_a_session_is_401_without_calling_payrails(
    checkout: Client, sandbox: SandboxHandle
) -> None:
    await create_order(checkout)
    response = await checkout.post("/payments/init", json={"type": "secureFields"})
    assert response.status == 401
    assert (await response.json(content_type=None))["error"] == "checkout_session_required"
    assert client_init_answers(sandbox) == []


# --- what a session may read --------------------------------------------------------------------


async def test_an_order_is_not_found_without_a_session(checkout: Client) -> None:
    """A reference alone reveals nothing: the answer is that of an order that does not exist."""
    reference, _ = await create_order(checkout)
    response = await checkout.get(f"/orders/{reference}")
    unknown = await checkout.get("/orders/no-such-order")
    assert (response.status, unknown.status) == (404, 404)
    assert await response.json(content_type=None) == await unknown.json(content_type=None)


async def test_an_order_is_not_found_with_another_order_s_session(checkout: Client) -> None:
    await start_checkout(checkout)
    other, _ = await create_order(checkout)
    response = await checkout.get(f"/orders/{other}")
    assert response.status == 404
    assert (await response.json(content_type=None))["error"] == "not_found"


async def test_the_session_s_own_order_is_readable_and_not_cached(checkout: Client) -> None:
    reference = await start_checkout(checkout)
    response = await checkout.get(f"/orders/{reference}")
    answer = await response.json()
    assert response.status == 200, answer
    assert answer["status"] == "created"
    assert answer["amount"] == {"value": "129.90", "currency": "EUR"}
    assert response.headers["Cache-Control"] == "no-store"


async def test_the_session_header_reads_as_the_cookie_does(checkout: Client) -> None:
    """Native apps send the token in X-Checkout-Session instead of a cookie."""
    reference, token = await create_order(checkout)
    response = await checkout.get(f"/orders/{reference}", headers=session_header(token))
    assert response.status == 200, await response.text()
    assert (await response.json())["orderReference"] == reference


async def test_the_session_summary_shows_the_order_s_price(checkout: Client) -> None:
    reference = await start_checkout(checkout, value="49.95")
    response = await checkout.get("/checkout/session")
    answer = await response.json()
    assert response.status == 200, answer
    bound = await bound_session(checkout)
    assert answer == {
        "orderReference": reference,
        "amount": {"value": "49.95", "currency": "EUR"},
        "status": "created",
        "expiresAt": bound.expires_at.isoformat(),
    }
    assert response.headers["Cache-Control"] == "no-store"


async def test_the_session_summary_without_a_session_is_401(checkout: Client) -> None:
    response = await checkout.get("/checkout/session")
    assert response.status == 401
    assert (await response.json(content_type=None))["error"] == "checkout_session_required"


# --- the checkout link --------------------------------------------------------------------------


async def test_the_checkout_link_sets_an_http_only_lax_cookie_and_redirects_to_the_shop(
    checkout: Client, checkout_settings: Settings
) -> None:
    """PUBLIC_BASE_URL is plain http on loopback here, so the cookie cannot be Secure."""
    _, token = await create_order(checkout)
    response = await checkout.get(f"/checkout/start?session={token}", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    cookie = SimpleCookie(response.headers["Set-Cookie"])[COOKIE]
    assert cookie.value == token
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert not cookie["secure"]
    ttl = checkout_settings.checkout_session_ttl_seconds
    assert ttl - 60 <= int(cookie["max-age"]) <= ttl
    assert session_token(checkout) == token


async def test_the_checkout_cookie_is_secure_behind_https(
    checkout: Client, checkout_settings: Settings, topology: Names
) -> None:
    public = checkout_settings.model_copy(
        update={"checkout_port": free_port(), "public_base_url": "https://shop.example"}
    )
    async with serve_checkout(public) as client:
        _, token = await create_order(client)
        response = await client.get(f"/checkout/start?session={token}", allow_redirects=False)
    assert response.status == 303
    assert SimpleCookie(response.headers["Set-Cookie"])[COOKIE]["secure"] is True


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("session=not-a-session-token", id="unknown"),
        pytest.param("session=" + "a" * 100, id="too-long"),
        pytest.param("session=", id="empty"),
        pytest.param("", id="absent"),
    ],
)
async def test_an_invalid_checkout_link_is_403_and_sets_no_cookie(
    query: str, checkout: Client
) -> None:
    response = await checkout.get(f"/checkout/start?{query}", allow_redirects=False)
    assert response.status == 403
    assert response.content_type == "text/html"
    assert "Set-Cookie" not in response.headers


async def test_an_expired_checkout_link_is_403(
    checkout: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, token = await create_order(checkout)
    await expire_session(sessions, token)
    response = await checkout.get(f"/checkout/start?session={token}", allow_redirects=False)
    assert response.status == 403
    assert "Set-Cookie" not in response.headers


# --- the 3-D Secure return ----------------------------------------------------------------------


async def test_a_return_without_a_session_is_404_json(
    checkout: Client, sandbox: SandboxHandle, authorize_consumer: AuthorizeConsumer
) -> None:
    paid = await paid_order(checkout, sandbox)
    checkout.session.cookie_jar.clear()
    response = await checkout.get(f"/payment-return/{paid['executionId']}", headers=JSON)
    assert response.status == 404
    assert response.content_type == PROBLEM
    assert (await response.json(content_type=None))["error"] == "not_found"


async def test_a_return_without_a_session_is_a_404_page_that_names_nothing(
    checkout: Client, sandbox: SandboxHandle, authorize_consumer: AuthorizeConsumer
) -> None:
    """The iframe's return carries no SameSite cookie: the page only tells the parent frame."""
    paid = await paid_order(checkout, sandbox)
    checkout.session.cookie_jar.clear()
    response = await checkout.get(f"/payment-return/{paid['executionId']}", headers=HTML)
    page = await response.text()
    assert response.status == 404
    assert response.content_type == "text/html"
    assert "threeds:returned" in page
    assert paid["orderReference"] not in page
    assert "authorized" not in page.lower()
    assert "frame-ancestors 'self'" in response.headers["Content-Security-Policy"]


async def test_a_return_with_another_order_s_session_is_404(
    checkout: Client, sandbox: SandboxHandle, authorize_consumer: AuthorizeConsumer
) -> None:
    paid = await paid_order(checkout, sandbox)
    own = await checkout.get(f"/payment-return/{paid['executionId']}", headers=JSON)
    assert own.status == 200, await own.text()
    _, other = await create_order(checkout)
    headers = {**JSON, **session_header(other)}
    response = await checkout.get(f"/payment-return/{paid['executionId']}", headers=headers)
    assert response.status == 404
    assert (await response.json(content_type=None))["error"] == "not_found"
