"""The client's transport behaviour against the sandbox: tokens, retries, idempotency, faults."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import pytest
from structlog.testing import capture_logs

from sandbox.control_client import SandboxHandle
from shared.config import Secret
from shared.errors import InvalidPayload
from shared.money import Money
from shared.payrails.client import ActionAck, PayrailsClient, open_payrails_client
from shared.payrails.errors import PayrailsAuthError, PayrailsError, PayrailsTransientError
from shared.payrails.models import ExecutionOutcome
from tests.payrails.flows import (
    AMOUNT,
    APPROVE,
    PRE_AUTHORIZE,
    authorize_card,
    instrument_for,
    new_execution,
    return_url,
)
from tests.settings import Settings
from tests.waiting import sample

PART = Money(Decimal("5.00"), "EUR")


class RecordingSleep:
    """Stands in for asyncio.sleep so a test can see how long the client chose to wait."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def strip_idempotency_key(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """A proxy on the way to Payrails that drops ``x-idempotency-key``."""
    request.headers.popall("x-idempotency-key", None)
    return await handler(request)


@pytest.fixture
def client_settings(settings: Settings, sandbox: SandboxHandle) -> Settings:
    return settings.model_copy(
        update={
            "payrails_base_url": sandbox.url,
            "payrails_timeout_seconds": 1.0,
            "payrails_retry_backoff_seconds": 0.01,
        }
    )


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_fifty_concurrent_calls_with_a_stale_token_fetch_exactly_one_new_token(
    payrails: PayrailsClient, sandbox: SandboxHandle
) -> None:
    execution = await new_execution(payrails)
    await sandbox.expire_tokens()
    before = (await sandbox.stats())["tokensIssued"]

    results = await asyncio.gather(*(payrails.get_execution(execution.id) for _ in range(50)))

    assert {r.id for r in results} == {execution.id}
    assert (await sandbox.stats())["tokensIssued"] == before + 1


async def test_fifty_concurrent_calls_after_the_token_expired_locally_fetch_one_token(
    client_settings: Settings, sandbox: SandboxHandle, http: aiohttp.ClientSession
) -> None:
    now = [0.0]
    client = PayrailsClient(client_settings, http, clock=lambda: now[0])
    execution = await new_execution(client)
    now[0] += 10 * sandbox.config.token_ttl_seconds

    await asyncio.gather(*(client.get_execution(execution.id) for _ in range(50)))

    stats = await sandbox.stats()
    assert stats["tokensIssued"] == 2
    assert stats["requests"]["get_execution"] == 50


async def test_token_is_reused_across_calls(
    payrails: PayrailsClient, sandbox: SandboxHandle
) -> None:
    for _ in range(3):
        await new_execution(payrails)
    assert (await sandbox.stats())["tokensIssued"] == 1


async def test_wrong_secret_is_a_typed_auth_error(client_settings: Settings) -> None:
    wrong = client_settings.model_copy(update={"payrails_client_secret": Secret("not-it")})
    async with open_payrails_client(wrong) as client:
        with pytest.raises(PayrailsAuthError) as caught:
            await new_execution(client)
    assert caught.value.status == 401
    assert caught.value.code == "invalid_client"
    assert not caught.value.retryable


async def test_lost_authorize_response_is_retried_with_the_same_key_and_executed_once(
    payrails: PayrailsClient, sandbox: SandboxHandle
) -> None:
    instrument = await instrument_for(payrails, sandbox, APPROVE)
    execution = await new_execution(payrails)
    await sandbox.set_faults({"endpoints": {"authorize": {"drop_response_rate": 1.0, "times": 1}}})

    ack = await payrails.authorize(
        execution.id,
        amount=AMOUNT,
        payment_instrument_id=instrument,
        payment_method_code="card",
        return_url=return_url(execution.id),
        idempotency_key=uuid.uuid4(),
    )

    stats = await sandbox.stats()
    assert ack.name == "authorize"
    assert stats["faultsInjected"] == {"authorize.drop_response": 1}
    assert stats["requests"]["authorize"] == 2
    assert stats["authorizesExecuted"] == {execution.id: 1}
    assert stats["idempotentReplays"] == 1


async def test_lost_create_response_is_retried_with_the_same_key_and_creates_one_execution(
    payrails: PayrailsClient, sandbox: SandboxHandle
) -> None:
    await sandbox.set_faults(
        {"endpoints": {"create_execution": {"drop_response_rate": 1.0, "times": 1}}}
    )
    execution = await new_execution(payrails)
    stats = await sandbox.stats()
    assert stats["executionsCreated"] == 1
    assert stats["requests"]["create_execution"] == 2
    assert execution.outcome is ExecutionOutcome.PENDING


async def test_repeated_key_replays_the_first_execution(
    payrails: PayrailsClient, sandbox: SandboxHandle
) -> None:
    key = uuid.uuid4()
    first = await payrails.create_execution(
        merchant_reference="order-a", holder_reference="c", meta={}, idempotency_key=key
    )
    second = await payrails.create_execution(
        merchant_reference="order-b", holder_reference="c", meta={}, idempotency_key=key
    )
    assert second.id == first.id
    assert second.merchant_reference == "order-a"
    assert (await sandbox.stats())["executionsCreated"] == 1


async def test_non_v4_idempotency_key_is_a_typed_error(payrails: PayrailsClient) -> None:
    with pytest.raises(PayrailsError) as caught:
        await payrails.create_execution(
            merchant_reference="order-1",
            holder_reference="c",
            meta={},
            idempotency_key=uuid.uuid1(),
        )
    assert caught.value.code == "request.idempotency-key.not-uuid"
    assert caught.value.status == 400
    assert not caught.value.retryable


async def test_missing_idempotency_key_is_a_typed_error_that_is_not_retried(
    client_settings: Settings, sandbox: SandboxHandle
) -> None:
    async with aiohttp.ClientSession(middlewares=(strip_idempotency_key,)) as stripped:
        client = PayrailsClient(client_settings, stripped, sleep=RecordingSleep())
        with pytest.raises(PayrailsError) as caught:
            await client.create_execution(
                merchant_reference="order-1",
                holder_reference="c",
                meta={},
                idempotency_key=uuid.uuid4(),
            )
    assert caught.value.code == "request.idempotency-key.missing"
    assert caught.value.status == 400
    assert not caught.value.retryable
    stats = await sandbox.stats()
    assert stats["requests"]["create_execution"] == 1
    assert stats["executionsCreated"] == 0


async def test_rate_limit_is_honoured_with_the_retry_after_delay(
    client_settings: Settings, sandbox: SandboxHandle, http: aiohttp.ClientSession
) -> None:
    sleep = RecordingSleep()
    client = PayrailsClient(client_settings, http, sleep=sleep)
    execution = await new_execution(client)
    await sandbox.set_faults(
        {
            "endpoints": {
                "get_execution": {"rate_limit_rate": 1.0, "retry_after_seconds": 7, "times": 1}
            }
        }
    )

    fetched = await client.get_execution(execution.id)

    assert fetched.id == execution.id
    assert sleep.delays == [7.0]
    assert (await sandbox.stats())["faultsInjected"] == {"get_execution.rate_limit": 1}


async def test_retry_after_beyond_the_cap_is_a_transient_error_carrying_it(
    client_settings: Settings, sandbox: SandboxHandle, http: aiohttp.ClientSession
) -> None:
    capped = client_settings.model_copy(update={"payrails_retry_after_max_seconds": 5.0})
    client = PayrailsClient(capped, http, sleep=RecordingSleep())
    execution = await new_execution(client)
    await sandbox.set_faults(
        {"endpoints": {"get_execution": {"rate_limit_rate": 1.0, "retry_after_seconds": 60}}}
    )
    with pytest.raises(PayrailsTransientError) as caught:
        await client.get_execution(execution.id)
    assert caught.value.status == 429
    assert caught.value.code == "request.rate-limit"
    assert caught.value.retry_after == 60.0


async def test_server_errors_are_retried_a_bounded_number_of_times(
    client_settings: Settings, sandbox: SandboxHandle, http: aiohttp.ClientSession
) -> None:
    sleep = RecordingSleep()
    client = PayrailsClient(client_settings, http, sleep=sleep)
    execution = await new_execution(client)
    await sandbox.set_faults({"endpoints": {"capture": {"error_rate": 1.0}}})

    with pytest.raises(PayrailsTransientError) as caught:
        await client.capture(execution.id, idempotency_key=uuid.uuid4())

    assert caught.value.status == 503
    assert caught.value.retryable
    assert len(sleep.delays) == client_settings.payrails_max_retries
    stats = await sandbox.stats()
    assert stats["requests"]["capture"] == client_settings.payrails_max_retries + 1


async def test_hanging_request_times_out_and_the_retry_succeeds(
    client_settings: Settings, sandbox: SandboxHandle, http: aiohttp.ClientSession
) -> None:
    quick = client_settings.model_copy(update={"payrails_timeout_seconds": 0.3})
    client = PayrailsClient(quick, http)
    await sandbox.set_faults(
        {"endpoints": {"create_execution": {"hang_rate": 1.0, "hang_seconds": 5, "times": 1}}}
    )
    execution = await new_execution(client)
    stats = await sandbox.stats()
    assert stats["faultsInjected"] == {"create_execution.hang": 1}
    assert stats["executionsCreated"] == 1
    assert execution.id


async def test_latency_beyond_the_request_timeout_is_retried_then_a_timeout_error(
    client_settings: Settings, sandbox: SandboxHandle, http: aiohttp.ClientSession
) -> None:
    quick = client_settings.model_copy(update={"payrails_timeout_seconds": 0.2})
    sleep = RecordingSleep()
    client = PayrailsClient(quick, http, sleep=sleep)
    execution = await new_execution(client)
    await sandbox.set_faults({"endpoints": {"get_execution": {"latency_seconds": 1.0}}})

    with pytest.raises(PayrailsTransientError) as caught:
        await client.get_execution(execution.id)

    assert isinstance(caught.value.__cause__, TimeoutError)
    assert caught.value.retryable
    assert len(sleep.delays) == quick.payrails_max_retries
    stats = await sandbox.stats()
    assert stats["requests"]["get_execution"] == quick.payrails_max_retries + 1


async def test_long_poll_answers_the_current_state_when_the_server_wait_runs_out(
    payrails: PayrailsClient, sandbox: SandboxHandle
) -> None:
    execution = await new_execution(payrails)
    await sandbox.set_config(max_wait_seconds=0.2)
    fetched = await payrails.get_execution(execution.id, wait_while=["created"], timeout=0.1)
    assert fetched.latest_code == "created"
    assert (await sandbox.stats())["requests"]["get_execution"] == 1


async def test_failed_long_poll_falls_back_to_one_plain_read(
    payrails: PayrailsClient, sandbox: SandboxHandle
) -> None:
    execution = await new_execution(payrails)
    await sandbox.set_faults({"endpoints": {"get_execution": {"error_rate": 1.0, "times": 1}}})

    with capture_logs() as logs:
        fetched = await payrails.get_execution(execution.id, wait_while=["created"])

    stats = await sandbox.stats()
    assert fetched.id == execution.id
    assert fetched.latest_code == "created"
    assert stats["requests"]["get_execution"] == 2
    assert stats["faultsInjected"] == {"get_execution.error": 1}
    fallbacks = [e for e in logs if e["event"] == "payrails.long_poll.fallback"]
    assert [(e["status"], e["code"]) for e in fallbacks] == [(503, "service.unavailable")]


async def test_second_401_after_reauthentication_is_a_typed_auth_error(
    payrails: PayrailsClient, sandbox: SandboxHandle
) -> None:
    execution = await new_execution(payrails)
    await sandbox.set_faults(
        {"endpoints": {"get_execution": {"unauthorized_rate": 1.0, "times": 2}}}
    )

    with pytest.raises(PayrailsAuthError) as caught:
        await payrails.get_execution(execution.id)

    stats = await sandbox.stats()
    assert (caught.value.status, caught.value.code) == (401, "request.unauthorized")
    assert not caught.value.retryable
    assert stats["requests"]["token"] == 2
    assert stats["requests"]["get_execution"] == 2
    assert stats["faultsInjected"] == {"get_execution.unauthorized": 2}


async def test_success_reply_without_a_json_body_is_an_invalid_payload(
    payrails: PayrailsClient, sandbox: SandboxHandle
) -> None:
    execution = await new_execution(payrails)
    await sandbox.set_faults(
        {"endpoints": {"get_execution": {"garble_response_rate": 1.0, "times": 1}}}
    )
    with pytest.raises(InvalidPayload):
        await payrails.get_execution(execution.id)
    assert (await sandbox.stats())["faultsInjected"] == {"get_execution.garble_response": 1}


async def test_capture_then_refund_change_the_execution_statuses(
    payrails: PayrailsClient, sandbox: SandboxHandle
) -> None:
    await sandbox.set_config(capture_mode="manual")
    execution = await authorize_card(payrails, sandbox, APPROVE)
    capture = await payrails.capture(execution.id, idempotency_key=uuid.uuid4())
    captured = await payrails.get_execution(execution.id, wait_while=["captureRequested"])
    refund = await payrails.refund(execution.id, idempotency_key=uuid.uuid4(), amount=AMOUNT)
    refunded = await payrails.get_execution(execution.id, wait_while=["refundRequested"])

    assert (capture.name, refund.name) == ("capture", "refund")
    assert captured.latest_code == "captureSuccessful"
    assert refunded.latest_code == "refundSuccessful"
    assert refunded.raw["payments"][-1]["status"] == "Refunded"
    assert refunded.outcome is ExecutionOutcome.SUCCEEDED


async def test_cancel_voids_an_authorized_payment(
    payrails: PayrailsClient, sandbox: SandboxHandle
) -> None:
    await sandbox.set_config(capture_mode="manual")
    execution = await authorize_card(payrails, sandbox, APPROVE)
    await payrails.cancel(execution.id, idempotency_key=uuid.uuid4())
    canceled = await payrails.get_execution(execution.id, wait_while=["cancelRequested"])
    assert canceled.latest_code == "cancelSuccessful"
    assert canceled.raw["payments"][-1]["status"] == "Canceled"


async def test_instant_capture_keeps_the_authorize_outcome_succeeded(
    payrails: PayrailsClient, sandbox: SandboxHandle
) -> None:
    await sandbox.set_config(capture_mode="instant")
    execution = await authorize_card(payrails, sandbox, APPROVE)
    captured = await payrails.get_execution(execution.id, wait_while=["captureRequested"])
    assert captured.latest_code == "captureSuccessful"
    assert captured.outcome is ExecutionOutcome.SUCCEEDED


async def test_partial_captures_then_a_final_one_through_the_client(
    payrails: PayrailsClient, sandbox: SandboxHandle
) -> None:
    await sandbox.set_config(capture_mode="manual")
    execution = await authorize_card(payrails, sandbox, APPROVE)
    first = await payrails.capture(
        execution.id, idempotency_key=uuid.uuid4(), amount=PART, final=False
    )
    await payrails.get_execution(execution.id, wait_while=["captureRequested"])
    await payrails.capture(execution.id, idempotency_key=uuid.uuid4())
    await payrails.get_execution(execution.id, wait_while=["captureRequested"])

    assert first.next_actions == {"capture"}  # the first capture is still in flight
    picture = await sandbox.money_picture(execution.id)
    assert [o["amount"]["value"] for o in picture["operations"]] == ["5.00", "7.50"]
    assert (picture["captured"], picture["captureClosed"]) == ("12.50", True)


async def test_several_partial_refunds_through_the_client(
    payrails: PayrailsClient, sandbox: SandboxHandle
) -> None:
    await sandbox.set_config(capture_mode="manual")
    execution = await authorize_card(payrails, sandbox, APPROVE)
    await payrails.capture(execution.id, idempotency_key=uuid.uuid4())
    await payrails.get_execution(execution.id, wait_while=["captureRequested"])
    for _ in range(2):
        await payrails.refund(execution.id, idempotency_key=uuid.uuid4(), amount=PART)
        await payrails.get_execution(execution.id, wait_while=["refundRequested"])

    assert (await sandbox.money_picture(execution.id))["refunded"] == "10.00"
    with pytest.raises(PayrailsError) as caught:
        await payrails.refund(execution.id, idempotency_key=uuid.uuid4(), amount=PART)
    assert (caught.value.status, caught.value.code) == (400, "workflow.action.not-allowed")


async def test_cancel_after_a_partial_capture_refunds_it_and_voids_the_rest(
    payrails: PayrailsClient, sandbox: SandboxHandle
) -> None:
    await sandbox.set_config(capture_mode="manual")
    execution = await authorize_card(payrails, sandbox, APPROVE)
    await payrails.capture(execution.id, idempotency_key=uuid.uuid4(), amount=PART, final=False)
    await payrails.get_execution(execution.id, wait_while=["captureRequested"])
    await payrails.cancel(execution.id, idempotency_key=uuid.uuid4(), reason="Duplicate")
    canceled = await payrails.get_execution(execution.id, wait_while=["cancelRequested"])

    picture = await sandbox.money_picture(execution.id)
    assert (picture["refunded"], picture["voided"]) == ("5.00", "7.50")
    assert canceled.raw["payments"][-1]["status"] == "Refunded"


async def test_a_capture_mode_override_goes_to_payrails_on_create(
    payrails: PayrailsClient, sandbox: SandboxHandle
) -> None:
    await sandbox.set_config(capture_mode="instant")
    instrument = await instrument_for(payrails, sandbox, APPROVE)
    execution = await payrails.create_execution(
        merchant_reference=f"order-{uuid.uuid4().hex[:10]}",
        holder_reference="customer-1",
        meta={},
        idempotency_key=uuid.uuid4(),
        capture_mode="manual",
    )
    await payrails.authorize(
        execution.id,
        amount=AMOUNT,
        payment_instrument_id=instrument,
        payment_method_code="card",
        return_url=return_url(execution.id),
        idempotency_key=uuid.uuid4(),
    )
    authorized = await payrails.get_execution(execution.id, wait_while=PRE_AUTHORIZE)

    assert authorized.latest_code == "authorizeSuccessful"
    assert (await sandbox.money_picture(execution.id))["captureMode"]["mode"] == "manual"


async def test_an_undocumented_capture_mode_is_refused_before_any_call(
    payrails: PayrailsClient, sandbox: SandboxHandle
) -> None:
    before = (await sandbox.stats())["executionsCreated"]
    with pytest.raises(ValueError, match="capture_mode"):
        await payrails.create_execution(
            merchant_reference="order-x",
            holder_reference="customer-1",
            meta={},
            idempotency_key=uuid.uuid4(),
            capture_mode="later",
        )
    assert (await sandbox.stats())["executionsCreated"] == before


async def test_a_failed_or_unknown_capture_leaves_the_authorization_succeeded(
    payrails: PayrailsClient, sandbox: SandboxHandle
) -> None:
    execution = await authorize_card(payrails, sandbox, APPROVE)
    for ending in ("91", "93"):  # a failed capture, then one whose outcome is unknown
        amount = Money(Decimal(f"1.{ending}"), "EUR")
        await payrails.capture(
            execution.id, idempotency_key=uuid.uuid4(), amount=amount, final=False
        )
        after = await payrails.get_execution(execution.id, wait_while=["captureRequested"])
        assert after.latest_code == "captureFailed"

    assert after.outcome is ExecutionOutcome.SUCCEEDED
    assert after.operation_result == "Success"
    failed = [entry for entry in after.raw["status"] if entry["code"] == "captureFailed"]
    assert sorted(e["errors"][0]["detail"] for e in failed) == [
        "GenericRejection",
        "ProviderTimeout",
    ]


async def test_the_seed_shape_reads_captured_then_refunded_through_the_client(
    payrails: PayrailsClient, sandbox: SandboxHandle
) -> None:
    await sandbox.set_config(status_shape="seed")
    execution = await authorize_card(payrails, sandbox, APPROVE)
    await payrails.capture(execution.id, idempotency_key=uuid.uuid4())
    captured = await payrails.get_execution(execution.id, wait_while=["captureRequested"])
    await payrails.refund(execution.id, idempotency_key=uuid.uuid4())
    refunded = await payrails.get_execution(execution.id, wait_while=["refundRequested"])

    assert (captured.latest_code, refunded.latest_code) == ("captured", "refunded")
    assert refunded.outcome is ExecutionOutcome.SUCCEEDED


def test_an_action_answer_without_links_parses_with_no_next_actions() -> None:
    ack = ActionAck.from_api({"name": "refund", "actionId": "a-1"})
    assert (ack.name, ack.action_id, ack.next_actions) == ("refund", "a-1", frozenset())
    assert ack.execution_url is None


def test_an_action_answer_lists_the_actions_it_links_to() -> None:
    href = {"method": "POST", "href": "https://payrails.example/x/refund"}
    ack = ActionAck.from_api(
        {"name": "capture", "actionId": "a-2", "links": {"refund": href, "cancel": href}}
    )
    assert ack.next_actions == {"refund", "cancel"}


async def test_action_not_allowed_is_a_typed_error(payrails: PayrailsClient) -> None:
    execution = await new_execution(payrails)
    with pytest.raises(PayrailsError) as caught:
        await payrails.refund(execution.id, idempotency_key=uuid.uuid4())
    assert caught.value.code == "workflow.action.not-allowed"
    assert caught.value.status == 400


async def test_requests_are_counted_by_endpoint_template_and_status(
    payrails: PayrailsClient,
) -> None:
    labels = {"endpoint": "create_execution", "status": "201"}
    before = sample("recon_payrails_requests_total", **labels)
    await new_execution(payrails)
    assert sample("recon_payrails_requests_total", **labels) == before + 1


async def test_request_durations_are_observed_by_endpoint(payrails: PayrailsClient) -> None:
    def count() -> float:
        return sample("recon_payrails_request_seconds_count", endpoint="create_execution")

    before = count()
    await new_execution(payrails)
    assert count() == before + 1


async def test_client_init_returns_the_verbatim_payload(payrails: PayrailsClient) -> None:
    payload = await payrails.client_init(
        holder_reference="customer-1", init_type="secureFields", idempotency_key=uuid.uuid4()
    )
    assert set(payload) == {"version", "data"}
