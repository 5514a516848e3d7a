"""The shopper doors of the real checkout app: browser checks, rate limits, long-poll bounds."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ingress.checkout_app import create_checkout_app
from sandbox.control_client import SandboxHandle
from shared.messaging import Names
from tests.checkout.conftest import (
    FRICTIONLESS,
    create_order,
    serve_checkout,
    session_header,
)
from tests.ingress.test_http_guards import (
    DEADLINE,
    connection_end,
    guarded,
    one_byte_at_a_time,
    serve_guarded,
    slow_head,
    within,
)
from tests.settings import Settings
from tests.waiting import wait_until

Client = TestClient[web.Request, web.Application]


@pytest.fixture(autouse=True)
def _topology_removed_afterwards(topology: Names) -> Names:
    """The apps these tests start declare this test's topology; the fixture deletes it after."""
    return topology


# Refused by validation before Payrails is called: a cheap request that still passes the doors.
DROP_IN = {"type": "dropIn"}


async def test_a_session_past_its_rate_limit_is_answered_429_with_retry_after(
    checkout_settings: Settings,
) -> None:
    limited = checkout_settings.model_copy(update={"checkout_rate_limit_per_session": 2})
    async with serve_checkout(limited) as checkout:
        _, token = await create_order(checkout)
        statuses = [
            (await checkout.post("/payments/init", json=DROP_IN, headers=session_header(token)))
            for _ in range(3)
        ]
        refused = statuses[-1]
        error = (await refused.json(content_type=None))["error"]
    assert [r.status for r in statuses] == [422, 422, 429]
    assert int(refused.headers["Retry-After"]) >= 1
    assert error == "rate_limited"


async def test_an_address_past_its_rate_limit_is_answered_429_whatever_the_session(
    checkout_settings: Settings,
) -> None:
    limited = checkout_settings.model_copy(update={"checkout_rate_limit_per_address": 2})
    async with serve_checkout(limited) as checkout:
        tokens = [(await create_order(checkout))[1] for _ in range(3)]
        statuses = [
            (await checkout.post("/payments/init", json=DROP_IN, headers=session_header(t))).status
            for t in tokens
        ]
    assert statuses == [422, 422, 429]


async def test_junk_session_tokens_are_rate_limited_per_address(
    checkout_settings: Settings,
) -> None:
    limited = checkout_settings.model_copy(update={"checkout_rate_limit_per_address": 2})
    async with serve_checkout(limited) as checkout:
        statuses = [
            (
                await checkout.post(
                    "/checkout/place-order", json={}, headers=session_header(f"junk-{n}")
                )
            ).status
            for n in range(3)
        ]
    assert statuses == [401, 401, 429]


async def test_a_second_long_poll_of_one_session_is_refused_429_while_the_first_waits(
    checkout_settings: Settings, sandbox: SandboxHandle
) -> None:
    # No authorize consumer runs: the first place-order long-polls until its timeout.
    bounded = checkout_settings.model_copy(update={"checkout_long_polls_per_session": 1})
    async with serve_checkout(bounded) as checkout:
        _, token = await create_order(checkout)
        headers = session_header(token)
        instrument = await tokenize_with(checkout, sandbox, headers)
        body = {"paymentInstrumentId": instrument, "paymentMethodCode": "card"}
        first = asyncio.create_task(
            checkout.post("/checkout/place-order", json=body, headers=headers)
        )
        await wait_for_long_polls(checkout, 1)
        second = await checkout.post("/checkout/place-order", json=body, headers=headers)
        error = (await second.json(content_type=None))["error"]
        first_answer = await first
    assert second.status == 429
    assert error == "too_many_long_polls"
    assert int(second.headers["Retry-After"]) >= 1
    assert first_answer.status == 202


async def test_long_polls_past_the_total_bound_are_answered_503(
    checkout_settings: Settings, sandbox: SandboxHandle
) -> None:
    bounded = checkout_settings.model_copy(update={"checkout_long_polls_total": 1})
    async with serve_checkout(bounded) as checkout:
        bodies = []
        for _ in range(2):
            _, token = await create_order(checkout)
            headers = session_header(token)
            instrument = await tokenize_with(checkout, sandbox, headers)
            bodies.append(
                ({"paymentInstrumentId": instrument, "paymentMethodCode": "card"}, headers)
            )
        (body, headers), (other, other_headers) = bodies
        first = asyncio.create_task(
            checkout.post("/checkout/place-order", json=body, headers=headers)
        )
        await wait_for_long_polls(checkout, 1)
        refused = await checkout.post("/checkout/place-order", json=other, headers=other_headers)
        error = (await refused.json(content_type=None))["error"]
        await first
    assert refused.status == 503
    assert error == "overloaded"


async def test_a_foreign_origin_is_refused_403(checkout: Client) -> None:
    _, token = await create_order(checkout)
    headers = {**session_header(token), "Origin": "https://evil.example"}
    response = await checkout.post("/payments/init", json={}, headers=headers)
    assert response.status == 403
    assert (await response.json(content_type=None))["error"] == "foreign_origin"


async def test_the_checkout_origin_is_accepted(
    checkout: Client, checkout_settings: Settings
) -> None:
    _, token = await create_order(checkout)
    headers = {**session_header(token), "Origin": checkout_settings.public_base_url.upper()}
    response = await checkout.post("/payments/init", json=DROP_IN, headers=headers)
    assert response.status == 422


async def test_json_sent_as_text_plain_is_refused_415(checkout: Client) -> None:
    _, token = await create_order(checkout)
    headers = {**session_header(token), "Content-Type": "text/plain"}
    response = await checkout.post("/checkout/place-order", data=b"{}", headers=headers)
    assert response.status == 415


async def test_a_form_post_is_refused_415(checkout: Client) -> None:
    _, token = await create_order(checkout)
    response = await checkout.post(
        "/checkout/place-order",
        data={"paymentInstrumentId": "x", "paymentMethodCode": "card"},
        headers=session_header(token),
    )
    assert response.status == 415


async def tokenize_with(checkout: Client, sandbox: SandboxHandle, headers: dict[str, str]) -> str:
    response = await checkout.post("/payments/init", json={}, headers=headers)
    assert response.status == 200, await response.text()
    return await sandbox.tokenize(await response.json(), FRICTIONLESS)


async def wait_for_long_polls(checkout: Client, count: int) -> None:
    """Until ``count`` long-polls hold the app's gate (a condition, not a sleep)."""
    from ingress.checkout.keys import GUARDS

    gate = checkout.server.app[GUARDS].long_polls
    await wait_until(lambda: gate.in_flight >= count, timeout=10, interval=0.01)


async def test_a_place_order_body_sent_slowly_gets_408_within_the_body_timeout(
    checkout_settings: Settings,
) -> None:
    settings = guarded(checkout_settings)
    app = create_checkout_app(settings)
    async with serve_guarded(app, settings) as port:
        async with TestClient(TestServer(create_checkout_app(settings))) as merchant:
            _, token = await create_order(merchant)
        body = b'{"paymentInstrumentId": "' + b"a" * 300 + b'", "paymentMethodCode": "card"}'
        head = (
            f"POST /checkout/place-order HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"X-Checkout-Session: {token}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        ending = await connection_end(port, head=head, trickle=one_byte_at_a_time(body))
    assert within(ending, DEADLINE), ending.seconds
    assert ending.received.startswith(b"HTTP/1.1 408")


async def test_a_client_sending_checkout_headers_slowly_is_cut_off_within_the_header_timeout(
    checkout_settings: Settings,
) -> None:
    settings = guarded(checkout_settings)
    async with serve_guarded(create_checkout_app(settings), settings) as port:
        ending = await connection_end(port, trickle=slow_head())
    assert within(ending, DEADLINE), ending.seconds
