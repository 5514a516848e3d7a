"""The merchant API: a commerce backend creates orders (amount, currency, customer) and reads them.

Every call needs one of the merchant API keys; the answer to a create carries the checkout session
the shopper pays that order with.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.testing import capture_logs

from ingress.__main__ import forget_plain_keys
from ingress.checkout.keys import API_KEYS
from ingress.keys import CHECKOUT_SETTINGS
from sandbox.control_client import SandboxHandle
from shared.config import SANDBOX_MERCHANT_API_KEY
from shared.messaging import Names
from shared.money import TOO_MANY_INTEGER_DIGITS
from shared.order_store import utcnow
from shared.validation import SAFE_ALPHABET
from tests.checkout.conftest import (
    FRICTIONLESS,
    MERCHANT_AUTH,
    AuthorizeConsumer,
    count_orders,
    order_body,
    order_row,
    serve_checkout,
    session_header,
    terms,
)
from tests.ports import free_port
from tests.settings import Settings
from tests.waiting import sample

Client = TestClient[web.Request, web.Application]
PROBLEM = "application/problem+json"


def auth_failures(reason: str) -> float:
    return sample("recon_merchant_auth_failures_total", reason=reason)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def post_order(
    client: Client, body: Any, headers: dict[str, str] = MERCHANT_AUTH
) -> tuple[int, dict[str, Any]]:
    response = await client.post("/merchant/orders", json=body, headers=headers)
    return response.status, await response.json(content_type=None)


def with_keys(settings: Settings, base_env: dict[str, str], keys: str) -> Settings:
    """``settings`` on a port of its own, with MERCHANT_API_KEYS read as an operator sets it."""
    configured = Settings.from_env({**base_env, "MERCHANT_API_KEYS": keys})
    return settings.model_copy(
        update={"checkout_port": free_port(), "merchant_api_keys": configured.merchant_api_keys}
    )


# --- create ------------------------------------------------------------------------------------


async def test_a_new_order_is_created_201_with_a_checkout_session(
    checkout: Client, checkout_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    body = terms(customer="customer-42")
    asked_at = utcnow()
    status, answer = await post_order(checkout, body)
    assert status == 201, answer
    order = answer["order"]
    assert order["orderReference"] == body["orderReference"]
    assert order["customerReference"] == "customer-42"
    assert order["amount"] == {"value": "129.90", "currency": "EUR"}
    assert (order["status"], order["executionId"], order["failureReason"]) == (
        "created",
        None,
        None,
    )
    session = answer["checkoutSession"]
    assert session["checkoutUrl"] == (
        f"{checkout_settings.public_base_url}/checkout/start?session={session['token']}"
    )
    ttl = timedelta(seconds=checkout_settings.checkout_session_ttl_seconds)
    assert datetime.fromisoformat(session["expiresAt"]) >= asked_at + ttl
    row = await order_row(sessions, body["orderReference"])
    assert (row.status, row.amount_value, row.currency, row.customer_reference) == (
        "created",
        Decimal("129.90"),
        "EUR",
        "customer-42",
    )


async def test_the_same_terms_again_answer_200_and_keep_one_order(
    checkout: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    body = terms()
    first_status, first = await post_order(checkout, body)
    again_status, again = await post_order(checkout, body)
    assert (first_status, again_status) == (201, 200)
    unchanging = ("orderReference", "customerReference", "amount", "status", "createdAt")
    assert {k: again["order"][k] for k in unchanging} == {k: first["order"][k] for k in unchanging}
    assert await count_orders(sessions, body["orderReference"]) == 1


async def test_a_repeat_gives_a_new_session_and_the_first_stays_valid(checkout: Client) -> None:
    """A commerce backend that retried a create may hand either link to the shopper."""
    body = terms()
    _, first = await post_order(checkout, body)
    _, again = await post_order(checkout, body)
    tokens = [first["checkoutSession"]["token"], again["checkoutSession"]["token"]]
    assert tokens[0] != tokens[1]
    for token in tokens:
        response = await checkout.get("/checkout/session", headers=session_header(token))
        assert response.status == 200, await response.text()
        assert (await response.json())["orderReference"] == body["orderReference"]


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        pytest.param(
            {"amount": {"value": "1.00", "currency": "EUR"}}, ["amount.value"], id="amount"
        ),
        pytest.param(
            {"amount": {"value": "129.90", "currency": "USD"}}, ["amount.currency"], id="currency"
        ),
        pytest.param({"customerReference": "customer-2"}, ["customerReference"], id="customer"),
        pytest.param(
            {"amount": {"value": "100", "currency": "JPY"}, "customerReference": "customer-2"},
            ["amount.value", "amount.currency", "customerReference"],
            id="all",
        ),
    ],
)
async def test_the_same_reference_with_other_terms_is_409_naming_the_fields(
    change: dict[str, Any],
    fields: list[str],
    checkout: Client,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    body = terms()
    assert (await post_order(checkout, body))[0] == 201
    response = await checkout.post(
        "/merchant/orders", json={**body, **change}, headers=MERCHANT_AUTH
    )
    answer = await response.json(content_type=None)
    assert response.status == 409, answer
    assert response.content_type == PROBLEM
    assert (answer["error"], answer["status"]) == ("order_conflict", 409)
    assert answer["orderReference"] == body["orderReference"]
    assert answer["fields"] == fields
    row = await order_row(sessions, body["orderReference"])
    assert (row.amount_value, row.currency, row.customer_reference) == (
        Decimal("129.90"),
        "EUR",
        "customer-1",
    )


async def test_an_order_that_can_no_longer_be_paid_gets_no_checkout_session(
    checkout: Client, sandbox: SandboxHandle, authorize_consumer: AuthorizeConsumer
) -> None:
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    paid = await (await checkout.post("/checkout/place-order", json=body)).json()
    assert paid["status"] == "authorized", paid
    status, answer = await post_order(checkout, terms(body["orderReference"]))
    assert status == 200, answer
    assert answer["order"]["status"] == "paid"
    assert answer["checkoutSession"] is None


async def test_an_invalid_create_is_422_with_an_error_per_field_and_creates_nothing(
    checkout: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    body = {**terms(value="12.5"), "customerReference": "customer 1"}
    response = await checkout.post("/merchant/orders", json=body, headers=MERCHANT_AUTH)
    answer = await response.json(content_type=None)
    assert response.status == 422, answer
    assert response.content_type == PROBLEM
    assert answer["error"] == "validation_failed"
    assert answer["errors"] == [
        {"field": "amount.value", "message": "EUR amounts take exactly 2 decimal places"},
        {"field": "customerReference", "message": SAFE_ALPHABET},
    ]
    assert await count_orders(sessions, body["orderReference"]) == 0


async def test_a_create_missing_every_field_is_422_naming_each(checkout: Client) -> None:
    status, answer = await post_order(checkout, {})
    assert status == 422, answer
    assert {e["field"] for e in answer["errors"]} == {
        "orderReference",
        "amount",
        "customerReference",
    }


async def test_an_amount_too_large_for_the_order_table_is_422_and_creates_nothing(
    checkout: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    body = terms(value="1000000000000000.00")
    status, answer = await post_order(checkout, body)
    assert status == 422, answer
    assert answer["errors"] == [{"field": "amount.value", "message": TOO_MANY_INTEGER_DIGITS}]
    assert await count_orders(sessions, body["orderReference"]) == 0


# --- keys ---------------------------------------------------------------------------------------


async def test_a_create_without_a_key_is_401_problem_json_asking_for_a_bearer_key(
    checkout: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    before = auth_failures("missing")
    body = terms()
    response = await checkout.post("/merchant/orders", json=body)
    answer = await response.json(content_type=None)
    assert response.status == 401, answer
    assert response.content_type == PROBLEM
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (answer["status"], answer["error"]) == (401, "unauthorized")
    assert answer["message"] == answer["detail"]
    assert auth_failures("missing") == before + 1
    assert await count_orders(sessions, body["orderReference"]) == 0


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        pytest.param("Bearer not-a-merchant-key", "invalid", id="wrong-key"),
        pytest.param(f"Bearer {SANDBOX_MERCHANT_API_KEY}x", "invalid", id="key-with-a-suffix"),
        pytest.param(f"Basic {SANDBOX_MERCHANT_API_KEY}", "malformed", id="other-scheme"),
        pytest.param(SANDBOX_MERCHANT_API_KEY, "malformed", id="no-scheme"),
    ],
)
async def test_a_create_with_a_wrong_key_is_401_and_counted_by_reason(
    authorization: str,
    reason: str,
    checkout: Client,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    before = auth_failures(reason)
    body = terms()
    response = await checkout.post(
        "/merchant/orders", json=body, headers={"Authorization": authorization}
    )
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await response.json(content_type=None))["error"] == "unauthorized"
    assert auth_failures(reason) == before + 1
    assert await count_orders(sessions, body["orderReference"]) == 0


async def test_the_bearer_scheme_is_matched_in_any_case(checkout: Client) -> None:
    headers = {"Authorization": f"bEARER {SANDBOX_MERCHANT_API_KEY}"}
    response = await checkout.post("/merchant/orders", json=terms(), headers=headers)
    assert response.status == 201, await response.text()


async def test_a_read_without_a_key_is_401(checkout: Client) -> None:
    body = terms()
    assert (await post_order(checkout, body))[0] == 201
    response = await checkout.get(f"/merchant/orders/{body['orderReference']}")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_during_a_rotation_every_configured_key_is_accepted(
    checkout_settings: Settings, base_env: dict[str, str], topology: Names
) -> None:
    rotating = with_keys(checkout_settings, base_env, "key-2026-new, key-2025-old")
    async with serve_checkout(rotating) as client:
        for key in ("key-2026-new", "key-2025-old"):
            status, answer = await post_order(client, terms(), headers=bearer(key))
            assert status == 201, (key, answer)


async def test_a_key_removed_from_the_settings_is_refused(
    checkout_settings: Settings, base_env: dict[str, str], topology: Names
) -> None:
    rotated = with_keys(checkout_settings, base_env, "key-2026-new")
    async with serve_checkout(rotated) as client:
        assert (await post_order(client, terms(), headers=bearer("key-2026-new")))[0] == 201
        for gone in ("key-2025-old", SANDBOX_MERCHANT_API_KEY):
            status, answer = await post_order(client, terms(), headers=bearer(gone))
            assert status == 401, (gone, answer)


async def test_the_running_app_keeps_the_keys_only_as_digests(
    checkout_settings: Settings, base_env: dict[str, str], topology: Names
) -> None:
    configured = with_keys(checkout_settings, base_env, "key-2026-new")
    async with serve_checkout(configured) as client:
        assert client.app[CHECKOUT_SETTINGS].merchant_api_keys == ()
        assert "key-2026-new" not in repr(vars(client.app[API_KEYS]))
        assert (await post_order(client, terms(), headers=bearer("key-2026-new")))[0] == 201


def test_python_m_ingress_drops_the_plain_keys_from_its_environment() -> None:
    environ = {"MERCHANT_API_KEYS": "key-2026-new", "LOG_LEVEL": "INFO"}
    forget_plain_keys(environ)
    assert environ == {"LOG_LEVEL": "INFO"}


async def test_neither_a_right_nor_a_wrong_key_nor_the_session_is_ever_logged(
    checkout: Client, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-merchant-key-0123456789abcdef"
    with caplog.at_level(logging.DEBUG), capture_logs() as logs:
        status, answer = await post_order(checkout, terms())
        assert status == 201, answer
        token = answer["checkoutSession"]["token"]
        assert (await post_order(checkout, terms(), headers=bearer(wrong)))[0] == 401
        assert (await checkout.get("/orders/x", headers=session_header(token))).status == 404
    written = repr(logs) + "\n".join(record.getMessage() for record in caplog.records)
    assert logs, "the requests logged nothing: the test would prove nothing"
    for secret in (SANDBOX_MERCHANT_API_KEY, wrong, token):
        assert secret not in written


# --- read ---------------------------------------------------------------------------------------


async def test_a_merchant_reads_any_order_without_a_checkout_session(
    checkout: Client, sandbox: SandboxHandle, authorize_consumer: AuthorizeConsumer
) -> None:
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    paid = await (await checkout.post("/checkout/place-order", json=body)).json()
    checkout.session.cookie_jar.clear()
    response = await checkout.get(
        f"/merchant/orders/{body['orderReference']}", headers=MERCHANT_AUTH
    )
    answer = await response.json()
    assert response.status == 200, answer
    order = answer["order"]
    assert order["orderReference"] == body["orderReference"]
    assert (order["status"], order["executionId"]) == ("paid", paid["executionId"])
    assert order["paymentMethodCode"] == "card"
    assert order["amount"] == {"value": "129.90", "currency": "EUR"}
    assert order["customerReference"] == "customer-1"


@pytest.mark.parametrize("reference", ["no-such-order", "o" * 65, "order%201"])
async def test_reading_an_unknown_order_is_404(reference: str, checkout: Client) -> None:
    response = await checkout.get(f"/merchant/orders/{reference}", headers=MERCHANT_AUTH)
    assert response.status == 404
    assert response.content_type == PROBLEM
    assert (await response.json(content_type=None))["error"] == "not_found"


async def test_merchant_answers_are_never_cached(checkout: Client) -> None:
    body = terms()
    created = await checkout.post("/merchant/orders", json=body, headers=MERCHANT_AUTH)
    read = await checkout.get(f"/merchant/orders/{body['orderReference']}", headers=MERCHANT_AUTH)
    refused = await checkout.get(f"/merchant/orders/{body['orderReference']}")
    assert [r.status for r in (created, read, refused)] == [201, 200, 401]
    assert [r.headers.get("Cache-Control") for r in (created, read, refused)] == ["no-store"] * 3
