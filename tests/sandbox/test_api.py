"""The sandbox's HTTP API as a raw client sees it: auth, idempotency, tokenization, shapes."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy
from structlog.testing import capture_logs

from sandbox.control_client import SandboxHandle
from tests.settings import Settings

EXECUTIONS = "/merchant/workflows/payment-acceptance/executions"
TOKENIZE = "/public/secure-fields/tokenize"


class Raw:
    """Plain HTTP against the sandbox, with a valid token unless told otherwise."""

    def __init__(self, sandbox: SandboxHandle, settings: Settings, http: aiohttp.ClientSession):
        self.sandbox = sandbox
        self.settings = settings
        self.http = http
        self.token = ""

    async def authenticate(self) -> None:
        status, body, _ = await self.call(
            "POST",
            f"/auth/token/{self.settings.payrails_client_id}",
            headers={"x-api-key": self.settings.payrails_client_secret.reveal()},
        )
        assert status == 200
        self.token = body["access_token"]

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        key: str | None = None,
    ) -> tuple[int, Any, CIMultiDictProxy[str]]:
        sent = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if key is not None:
            sent["x-idempotency-key"] = key
        sent.update(headers or {})
        async with self.http.request(
            method, self.sandbox.url + path, json=body, headers=sent
        ) as response:
            text = await response.text()
            payload = json.loads(text) if "json" in response.content_type else text
            return response.status, payload, response.headers

    async def create(self, reference: str = "order-1") -> dict[str, Any]:
        body = {"merchantReference": reference, "holderReference": "c", "meta": {}}
        status, created, _ = await self.call("POST", EXECUTIONS, body, key=str(uuid.uuid4()))
        assert status == 201
        result: dict[str, Any] = created
        return result

    async def tokenize(
        self, body: dict[str, str], key: str | None = None
    ) -> tuple[int, Any, CIMultiDictProxy[str]]:
        """Tokenize as the Secure Fields iframe does, with a fresh idempotency key unless given."""
        return await self.call("POST", TOKENIZE, body, key=key or str(uuid.uuid4()))

    async def sdk_token(self) -> str:
        _, answer = await self.init()
        token: str = json.loads(base64.b64decode(answer["data"]))["token"]
        return token

    async def authorize(
        self, execution_id: str, instrument_id: str, key: str
    ) -> tuple[int, Any, CIMultiDictProxy[str]]:
        amount = {"value": "5.00", "currency": "EUR"}
        body = {
            "amount": amount,
            "returnInfo": {"success": "https://shop.example/return"},
            "paymentComposition": [{"paymentInstrumentId": instrument_id, "amount": amount}],
        }
        return await self.call("POST", f"{EXECUTIONS}/{execution_id}/authorize", body, key=key)

    async def init(self, **extra: Any) -> tuple[int, Any]:
        body = {
            "holderReference": "c",
            "type": "secureFields",
            "workspaceId": self.settings.payrails_workspace_id,
            **extra,
        }
        status, answer, _ = await self.call(
            "POST", "/merchant/client/init", body, key=str(uuid.uuid4())
        )
        return status, answer


@pytest.fixture
async def raw(sandbox: SandboxHandle, settings: Settings) -> AsyncIterator[Raw]:
    async with aiohttp.ClientSession() as http:
        client = Raw(sandbox, settings, http)
        await client.authenticate()
        yield client


def card(sdk_token: str, number: str = "4242424242424242", **extra: str) -> dict[str, str]:
    fields = {"expiryMonth": "12", "expiryYear": "2099", "securityCode": "123", **extra}
    return {"sdkToken": sdk_token, "cardNumber": number, **fields}


async def test_token_endpoint_answers_an_oauth_token_with_the_configured_lifetime(
    raw: Raw, sandbox: SandboxHandle
) -> None:
    await sandbox.set_config(token_ttl_seconds=42)
    status, body, headers = await raw.call(
        "POST",
        f"/auth/token/{raw.settings.payrails_client_id}",
        headers={"x-api-key": raw.settings.payrails_client_secret.reveal()},
    )
    assert status == 200
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 42)
    assert headers["Cache-Control"] == "no-store"


async def test_wrong_api_key_gets_401_in_the_oauth_error_shape(raw: Raw) -> None:
    status, body, _ = await raw.call(
        "POST", f"/auth/token/{raw.settings.payrails_client_id}", headers={"x-api-key": "nope"}
    )
    assert status == 401
    assert body["error"] == "invalid_client"


async def test_merchant_endpoints_refuse_a_missing_or_expired_token(
    raw: Raw, sandbox: SandboxHandle
) -> None:
    await sandbox.expire_tokens()
    status, body, _ = await raw.call(
        "POST", EXECUTIONS, {"merchantReference": "x"}, key=str(uuid.uuid4())
    )
    assert status == 401
    assert body["errors"][0]["code"] == "request.unauthorized"


async def test_write_without_an_idempotency_key_is_refused(raw: Raw) -> None:
    status, body, _ = await raw.call("POST", EXECUTIONS, {"merchantReference": "x"})
    error = body["errors"][0]
    assert status == 400
    assert error["code"] == "request.idempotency-key.missing"
    assert set(error) >= {"id", "code", "detail"}


async def test_write_with_a_non_uuid_idempotency_key_is_refused(raw: Raw) -> None:
    status, body, _ = await raw.call(
        "POST", EXECUTIONS, {"merchantReference": "x"}, key="order-123_attempt-1"
    )
    assert status == 400
    assert body["errors"][0]["code"] == "request.idempotency-key.not-uuid"


async def test_repeated_key_replays_the_original_response(raw: Raw, sandbox: SandboxHandle) -> None:
    key = str(uuid.uuid4())
    first = await raw.call("POST", EXECUTIONS, {"merchantReference": "a"}, key=key)
    second = await raw.call("POST", EXECUTIONS, {"merchantReference": "b"}, key=key)
    assert second[1] == first[1]
    assert second[2]["Idempotent-Replayed"] == "true"
    assert (await sandbox.stats())["executionsCreated"] == 1


async def test_same_key_on_another_endpoint_is_a_separate_write(
    raw: Raw, sandbox: SandboxHandle
) -> None:
    key = str(uuid.uuid4())
    await raw.call("POST", EXECUTIONS, {"merchantReference": "a"}, key=key)
    body = {"holderReference": "c", "workspaceId": raw.settings.payrails_workspace_id}
    status, answer, headers = await raw.call("POST", "/merchant/client/init", body, key=key)
    assert status == 200
    assert set(answer) == {"version", "data"}
    assert "Idempotent-Replayed" not in headers
    assert (await sandbox.stats())["idempotentReplays"] == 0


async def test_same_key_on_another_execution_is_a_separate_write(
    raw: Raw, sandbox: SandboxHandle
) -> None:
    first, second = await raw.create("order-a"), await raw.create("order-b")
    _, instrument, _ = await raw.tokenize(card(await raw.sdk_token()))
    key = str(uuid.uuid4())

    _, ack_a, _ = await raw.authorize(first["id"], instrument["id"], key)
    _, ack_b, _ = await raw.authorize(second["id"], instrument["id"], key)

    assert ack_a["actionId"] != ack_b["actionId"]
    assert ack_b["links"]["execution"].endswith(second["id"])
    assert (await sandbox.stats())["authorizesExecuted"] == {first["id"]: 1, second["id"]: 1}


async def test_a_second_authorize_key_counts_as_an_attempt_even_when_refused(
    raw: Raw, sandbox: SandboxHandle
) -> None:
    execution = await raw.create("order-attempts")
    _, instrument, _ = await raw.tokenize(card(await raw.sdk_token()))
    key = str(uuid.uuid4())

    first, _, _ = await raw.authorize(execution["id"], instrument["id"], key)
    replay, _, _ = await raw.authorize(execution["id"], instrument["id"], key)
    second, _, _ = await raw.authorize(execution["id"], instrument["id"], str(uuid.uuid4()))

    assert (first, replay) == (202, 202)
    assert second >= 400
    stats = await sandbox.stats()
    assert stats["authorizesExecuted"] == {execution["id"]: 1}
    assert stats["authorizeAttempts"] == {execution["id"]: 2}


async def test_an_unknown_or_foreign_instrument_is_refused_alike_before_any_authorize(
    raw: Raw, sandbox: SandboxHandle
) -> None:
    """Never issued, or issued to another holder: one 400 answer, and nothing authorized."""
    own = await raw.create("order-own")
    foreign = await raw.call(
        "POST",
        EXECUTIONS,
        {"merchantReference": "order-foreign", "holderReference": "someone-else", "meta": {}},
        key=str(uuid.uuid4()),
    )
    assert foreign[0] == 201
    _, instrument, _ = await raw.tokenize(card(await raw.sdk_token()))  # issued to holder "c"

    answers = [
        await raw.authorize(own["id"], "pi_never_issued", str(uuid.uuid4())),
        await raw.authorize(foreign[1]["id"], instrument["id"], str(uuid.uuid4())),
    ]

    for status, body, _ in answers:
        assert status == 400
        (error,) = body["errors"]
        assert error["code"] == "request.validation-error"
        assert error["detail"] == "paymentComposition[0].paymentInstrumentId is unknown"
    assert (await sandbox.stats())["authorizesExecuted"] == {}
    accepted, _, _ = await raw.authorize(own["id"], instrument["id"], str(uuid.uuid4()))
    assert accepted == 202  # the holder's own instrument still authorizes


async def test_pending_challenge_links_every_challenge_field_to_the_hosted_page(raw: Raw) -> None:
    created = await raw.create()
    _, instrument, _ = await raw.tokenize(card(await raw.sdk_token(), "4000000000003220"))
    await raw.authorize(created["id"], instrument["id"], str(uuid.uuid4()))
    path = f"{EXECUTIONS}/{created['id']}"
    _, body, _ = await raw.call("GET", f'{path}?waitWhile[status]=["created","authorizeRequested"]')

    href = body["requiredAction"]["href"]
    assert href == f"{raw.sandbox.url}/public/3ds/{created['id']}"
    assert (body["actionRequired"], body["requiredAction"]["type"]) == ("3ds", "redirect")
    assert body["links"]["redirect"] == href
    assert body["links"]["3ds"] == href
    assert body["links"]["consumerWait"] != href


async def test_client_init_data_is_base64_json_with_an_sdk_token(raw: Raw) -> None:
    status, answer = await raw.init()
    data = json.loads(base64.b64decode(answer["data"]))
    assert status == 200
    assert answer["version"]
    assert data["type"] == "secureFields"
    assert data["holderReference"] == "c"
    assert set(data) >= {"token", "vaultConfiguration", "links"}


async def test_client_init_without_the_workspace_is_refused(raw: Raw) -> None:
    status, answer = await raw.init(workspaceId=None)
    assert status == 401
    assert answer["errors"][0]["code"] == "request.unauthorized"


async def test_drop_in_client_init_creates_an_execution(raw: Raw, sandbox: SandboxHandle) -> None:
    status, answer = await raw.init(
        type="dropIn",
        workflowCode="payment-acceptance",
        merchantReference="order-9",
        amount={"value": "1.00", "currency": "EUR"},
    )
    data = json.loads(base64.b64decode(answer["data"]))
    assert status == 200
    assert data["execution"]["merchantReference"] == "order-9"
    assert (await sandbox.stats())["executionsCreated"] == 1


async def test_tokenize_answers_an_instrument_and_allows_cross_origin_calls(raw: Raw) -> None:
    _, answer = await raw.init()
    sdk_token = json.loads(base64.b64decode(answer["data"]))["token"]
    status, body, headers = await raw.tokenize(card(sdk_token))
    assert status == 201
    assert body["paymentInstrumentId"] == body["id"]
    assert (body["paymentMethodCode"], body["bin"], body["last4"]) == ("card", "424242", "4242")
    assert headers["Access-Control-Allow-Origin"] == "*"


async def test_tokenize_without_an_idempotency_key_is_refused_with_cors_headers(
    raw: Raw, sandbox: SandboxHandle
) -> None:
    status, body, headers = await raw.call("POST", TOKENIZE, card(await raw.sdk_token()))
    assert status == 400
    assert body["errors"][0]["code"] == "request.idempotency-key.missing"
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert (await sandbox.stats())["instrumentsTokenized"] == 0


async def test_tokenize_refuses_invalid_cards_with_cors_headers(raw: Raw) -> None:
    _, answer = await raw.init()
    sdk_token = json.loads(base64.b64decode(answer["data"]))["token"]
    invalid = [
        card(sdk_token, "4242424242424241"),
        card(sdk_token, expiryYear="2001"),
        card(sdk_token, securityCode="12"),
        card("not-a-session"),
    ]
    statuses = []
    for body in invalid:
        status, _, headers = await raw.tokenize(body)
        statuses.append(status)
        assert headers["Access-Control-Allow-Origin"] == "*"
    assert statuses == [400, 400, 400, 401]


async def test_tokenize_never_logs_the_card_number(raw: Raw) -> None:
    _, answer = await raw.init()
    sdk_token = json.loads(base64.b64decode(answer["data"]))["token"]
    with capture_logs() as logs:
        await raw.tokenize(card(sdk_token))
    assert "4242424242424242" not in repr(logs)
    assert sdk_token not in repr(logs)


async def test_documented_statuses_come_in_varying_order_but_sort_by_time(raw: Raw) -> None:
    created = await raw.create()
    _, instrument, _ = await raw.tokenize(card(await raw.sdk_token()))
    await raw.authorize(created["id"], instrument["id"], str(uuid.uuid4()))
    path = f"{EXECUTIONS}/{created['id']}"
    await raw.call("GET", f'{path}?waitWhile[status]=["created","authorizeRequested"]')

    orders, by_time = set(), set()
    for _ in range(20):
        _, body, _ = await raw.call("GET", path)
        orders.add(tuple(entry["code"] for entry in body["status"]))
        by_time.add(tuple(e["code"] for e in sorted(body["status"], key=lambda e: e["time"])))
    assert len(orders) > 1
    assert by_time == {("created", "authorizeRequested", "authorizeSuccessful")}


async def test_consumer_wait_link_is_always_present(raw: Raw) -> None:
    created = await raw.create()
    assert created["links"]["consumerWait"].endswith(f"/public/consumer-wait/{created['id']}")
    assert "actionRequired" not in created


async def test_plain_wait_while_value_is_accepted(raw: Raw) -> None:
    created = await raw.create()
    status, body, _ = await raw.call(
        "GET", f"{EXECUTIONS}/{created['id']}?waitWhile[status]=authorizeRequested"
    )
    assert status == 200
    assert body["id"] == created["id"]


async def test_unknown_execution_is_404(raw: Raw) -> None:
    status, body, _ = await raw.call("GET", f"{EXECUTIONS}/{uuid.uuid4()}")
    assert status == 404
    assert body["errors"][0]["code"] == "resource.not-found"


async def test_added_latency_slows_only_the_endpoint_it_is_set_on(
    raw: Raw, sandbox: SandboxHandle
) -> None:
    latency = 1.0
    created = await raw.create()
    await sandbox.set_faults({"endpoints": {"get_execution": {"latency_seconds": latency}}})

    started = time.monotonic()
    status, body, _ = await raw.call("GET", f"{EXECUTIONS}/{created['id']}")
    slowed = time.monotonic() - started
    started = time.monotonic()
    await raw.create("order-2")
    untouched = time.monotonic() - started

    assert (status, body["id"]) == (200, created["id"])
    assert slowed >= latency * 0.95
    assert untouched < latency / 2


async def test_invalid_fault_knobs_are_refused(raw: Raw) -> None:
    status, body, _ = await raw.call(
        "PUT", "/_sandbox/faults", {"endpoints": {"authorize": {"error_rate": 2}}}
    )
    assert status == 400
    assert "probability" in body["errors"][0]["detail"]


async def test_unknown_delivery_is_404(raw: Raw) -> None:
    status, body, _ = await raw.call("GET", f"/_sandbox/deliveries/{uuid.uuid4()}")
    assert status == 404
    assert body["errors"][0]["code"] == "resource.not-found"


async def test_delivery_wait_with_a_nonsense_timeout_is_refused(raw: Raw) -> None:
    status, body, _ = await raw.call(
        "GET", f"/_sandbox/deliveries/{uuid.uuid4()}?waitFor=delivered&timeout=nan"
    )
    assert status == 400
    assert "timeout" in body["errors"][0]["detail"]


async def test_secure_fields_sdk_is_served_from_the_sandbox(raw: Raw) -> None:
    from sandbox.secure_fields import SDK_PATH

    status, _, headers = await raw.call("GET", SDK_PATH)
    assert status == 200
    assert "javascript" in headers["Content-Type"]


async def test_health_endpoint_answers_ok(raw: Raw) -> None:
    status, body, _ = await raw.call("GET", "/healthz")
    assert (status, body) == (200, {"status": "ok"})
