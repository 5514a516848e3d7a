"""Capture, cancel and refund in the sandbox: the money rules, capture modes, and test amounts.

Every operation is answered 202 at once and completes later; the tests wait on the execution's
long-poll (``waitWhile[status]``), never on a clock.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from ingress.signature import verify_signature
from sandbox.config import SandboxConfig
from sandbox.control_client import SandboxHandle
from tests.sandbox.operations import DECLINE, Operations, money
from tests.sandbox.receiver import running_receiver
from tests.sandbox.test_api import Raw
from tests.settings import Settings

NOT_ALLOWED = "workflow.action.not-allowed"
INVALID = "request.validation-error"


@pytest.fixture
async def ops(sandbox: SandboxHandle, settings: Settings) -> AsyncIterator[Operations]:
    async with aiohttp.ClientSession() as http:
        raw = Raw(sandbox, settings, http)
        await raw.authenticate()
        yield Operations(raw, sandbox)


async def refused(ops: Operations, execution_id: str, action: str, body: dict[str, object]) -> str:
    """The error code of a refused action, after checking nothing was requested."""
    before = await ops.codes(execution_id)
    status, answer, _ = await ops.act(execution_id, action, body)
    assert status == 400, answer
    assert await ops.codes(execution_id) == before
    code: str = answer["errors"][0]["code"]
    return code


# --- capture modes -------------------------------------------------------------------------------
def test_a_sandbox_captures_instantly_unless_configured_otherwise() -> None:
    assert SandboxConfig().capture_mode == "instant"


async def test_instant_capture_follows_a_successful_authorize_in_an_instant_run(
    ops: Operations, sandbox: SandboxHandle
) -> None:
    await sandbox.set_config(capture_mode="instant")
    execution_id = await ops.authorized("20.00", mode=None)
    await ops.get(execution_id, wait_while=("captureRequested",))

    assert await ops.codes(execution_id) == [
        "created",
        "authorizeRequested",
        "authorizeSuccessful",
        "captureRequested",
        "captureSuccessful",
    ]
    picture = await ops.picture(execution_id)
    assert (picture["captured"], picture["captureClosed"]) == ("20.00", True)
    assert picture["captureMode"] == {"mode": "instant", "delaySeconds": 0.0}
    (capture,) = picture["operations"]
    assert (capture["automatic"], capture["final"]) == (True, True)
    (details,) = await ops.completions(execution_id, "capture")
    assert (details["success"], details["amount"]) == (True, money("20.00"))


async def test_manual_capture_mode_of_the_run_leaves_the_authorization_uncaptured(
    ops: Operations, sandbox: SandboxHandle
) -> None:
    await sandbox.set_config(capture_mode="manual")
    execution_id = await ops.authorized(mode=None)

    assert (await ops.codes(execution_id))[-1] == "authorizeSuccessful"
    body = await ops.get(execution_id)
    assert {"capture", "cancel"} <= set(body["links"])
    assert (await ops.picture(execution_id))["captured"] == "0.00"


async def test_an_executions_manual_override_wins_over_the_runs_instant_mode(
    ops: Operations, sandbox: SandboxHandle
) -> None:
    await sandbox.set_config(capture_mode="instant")
    execution_id = await ops.authorized(mode="manual")
    assert (await ops.codes(execution_id))[-1] == "authorizeSuccessful"
    assert (await ops.picture(execution_id))["captureMode"]["mode"] == "manual"


async def test_an_executions_instant_override_wins_over_a_manual_run(
    ops: Operations, sandbox: SandboxHandle
) -> None:
    await sandbox.set_config(capture_mode="manual")
    execution_id = await ops.authorized(mode="Instant")
    await ops.get(execution_id, wait_while=("authorizeSuccessful", "captureRequested"))
    assert (await ops.codes(execution_id))[-1] == "captureSuccessful"


async def test_a_delayed_override_captures_after_its_capture_delay(ops: Operations) -> None:
    execution_id = await ops.authorized(mode="Delayed", delay="PT0.05S")
    assert (await ops.picture(execution_id))["captureMode"] == {
        "mode": "delayed",
        "delaySeconds": 0.05,
    }
    await ops.get(execution_id, wait_while=("authorizeSuccessful", "captureRequested"))
    assert (await ops.codes(execution_id))[-1] == "captureSuccessful"


async def test_a_capture_delay_that_is_not_an_iso_duration_is_refused(ops: Operations) -> None:
    status, body, _ = await ops.create({"captureMode": "Delayed", "captureDelay": "1 hour"})
    assert status == 400
    assert body["errors"][0]["code"] == INVALID


async def test_an_unknown_capture_mode_override_is_refused_on_create(ops: Operations) -> None:
    status, body, _ = await ops.create({"captureMode": "whenever"})
    assert status == 400
    assert body["errors"][0]["code"] == INVALID


async def test_instant_capture_of_an_authorized_amount_ending_in_91_fails(
    ops: Operations,
) -> None:
    execution_id = await ops.authorized("10.91", mode="Instant")
    await ops.get(execution_id, wait_while=("captureRequested",))
    assert (await ops.codes(execution_id))[-1] == "captureFailed"
    (details,) = await ops.completions(execution_id, "capture")
    assert details["success"] is False


# --- capture --------------------------------------------------------------------------------------
async def test_a_capture_without_amount_captures_the_whole_authorization(
    ops: Operations,
) -> None:
    execution_id = await ops.authorized("20.00")
    body = await ops.done(execution_id, "capture", {})

    assert body["payments"][-1]["status"] == "Captured"
    assert "capture" not in body["links"]
    assert {"cancel", "refund"} <= set(body["links"])
    assert (await ops.picture(execution_id))["captured"] == "20.00"


async def test_a_final_partial_capture_releases_the_rest(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    await ops.done(execution_id, "capture", {"amount": money("5.00")})

    picture = await ops.picture(execution_id)
    assert (picture["captured"], picture["captureClosed"]) == ("5.00", True)
    assert await refused(ops, execution_id, "capture", {"amount": money("1.00")}) == NOT_ALLOWED


async def test_several_partial_captures_then_a_final_one(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    await ops.done(execution_id, "capture", {"amount": money("5.00"), "final": False})
    await ops.done(execution_id, "capture", {"amount": money("7.50"), "final": False})
    middle = await ops.picture(execution_id)
    await ops.done(execution_id, "capture", {"final": True})

    assert (middle["captured"], middle["captureClosed"]) == ("12.50", False)
    picture = await ops.picture(execution_id)
    assert (picture["captured"], picture["captureClosed"]) == ("20.00", True)
    amounts = [d["amount"]["value"] for d in await ops.completions(execution_id, "capture")]
    assert amounts == ["5.00", "7.50", "7.50"]


async def test_a_capture_above_the_uncaptured_amount_is_refused(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    await ops.done(execution_id, "capture", {"amount": money("15.00"), "final": False})
    assert await refused(ops, execution_id, "capture", {"amount": money("5.01")}) == NOT_ALLOWED


async def test_a_capture_above_the_authorization_is_refused(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    assert await refused(ops, execution_id, "capture", {"amount": money("20.01")}) == NOT_ALLOWED


async def test_a_capture_after_the_final_capture_is_refused(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    await ops.done(execution_id, "capture", {})
    assert await refused(ops, execution_id, "capture", {}) == NOT_ALLOWED


async def test_a_capture_in_another_currency_is_refused(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    assert await refused(ops, execution_id, "capture", {"amount": money("5.00", "USD")}) == INVALID


async def test_a_capture_of_a_declined_execution_is_refused(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00", card=DECLINE)
    assert await refused(ops, execution_id, "capture", {}) == NOT_ALLOWED


async def test_a_capture_before_any_authorize_is_refused(ops: Operations) -> None:
    status, created, _ = await ops.create()
    assert status == 201
    assert await refused(ops, created["id"], "capture", {}) == NOT_ALLOWED


async def test_a_capture_with_a_non_boolean_final_is_refused(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    assert await refused(ops, execution_id, "capture", {"final": "no"}) == INVALID


# --- cancel ---------------------------------------------------------------------------------------
async def test_a_cancel_before_capture_voids_the_authorization(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    body = await ops.done(execution_id, "cancel", {"reason": "NoReason"})

    assert body["payments"][-1]["status"] == "Canceled"
    picture = await ops.picture(execution_id)
    assert (picture["voided"], picture["refunded"], picture["canceled"]) == ("20.00", "0.00", True)
    (details,) = await ops.completions(execution_id, "cancel")
    assert (details["success"], details["amount"]) == (True, money("20.00"))


async def test_a_cancel_after_a_capture_refunds_what_was_captured(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    await ops.done(execution_id, "capture", {})
    await ops.done(execution_id, "refund", {"amount": money("5.00")})
    body = await ops.done(execution_id, "cancel", {})

    assert body["payments"][-1]["status"] == "Refunded"
    picture = await ops.picture(execution_id)
    assert (picture["refunded"], picture["voided"]) == ("20.00", "0.00")
    (details,) = await ops.completions(execution_id, "cancel")
    assert details["amount"] == money("15.00")


async def test_a_cancel_after_a_partial_capture_refunds_it_and_voids_the_rest(
    ops: Operations,
) -> None:
    execution_id = await ops.authorized("20.00")
    await ops.done(execution_id, "capture", {"amount": money("5.00"), "final": False})
    await ops.done(execution_id, "cancel", {})

    picture = await ops.picture(execution_id)
    assert (picture["refunded"], picture["voided"]) == ("5.00", "15.00")


async def test_a_partial_cancel_is_refused(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    assert await refused(ops, execution_id, "cancel", {"amount": money("5.00")}) == NOT_ALLOWED


async def test_a_cancel_naming_the_whole_amount_is_accepted(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    await ops.done(execution_id, "cancel", {"amount": money("20.00")})
    assert (await ops.picture(execution_id))["canceled"] is True


@pytest.mark.parametrize("action", ["capture", "refund", "cancel"])
async def test_nothing_follows_a_cancel(ops: Operations, action: str) -> None:
    execution_id = await ops.authorized("20.00")
    await ops.done(execution_id, "capture", {"amount": money("5.00"), "final": False})
    body = await ops.done(execution_id, "cancel", {})

    assert not {"capture", "refund", "cancel"} & set(body["links"])
    assert await refused(ops, execution_id, action, {}) == NOT_ALLOWED


async def test_a_cancel_while_a_capture_is_in_flight_is_refused(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    status, _, _ = await ops.act(execution_id, "capture", {"amount": money("5.92")})
    assert status == 202
    assert await refused(ops, execution_id, "cancel", {}) == NOT_ALLOWED


# --- refund ---------------------------------------------------------------------------------------
async def test_a_refund_without_amount_refunds_everything_captured(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    await ops.done(execution_id, "capture", {})
    body = await ops.done(execution_id, "refund", {})

    assert body["payments"][-1]["status"] == "Refunded"
    assert not {"refund", "capture"} & set(body["links"])
    assert (await ops.picture(execution_id))["refunded"] == "20.00"


async def test_several_partial_refunds_up_to_the_captured_amount(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    await ops.done(execution_id, "capture", {})
    first = await ops.done(execution_id, "refund", {"amount": money("5.00")})
    await ops.done(execution_id, "refund", {"amount": money("15.00")})

    assert first["payments"][-1]["status"] == "Captured"
    amounts = [d["amount"]["value"] for d in await ops.completions(execution_id, "refund")]
    assert amounts == ["5.00", "15.00"]
    assert (await ops.picture(execution_id))["refunded"] == "20.00"
    assert await refused(ops, execution_id, "refund", {"amount": money("0.01")}) == NOT_ALLOWED


async def test_a_refund_above_the_captured_amount_is_refused(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    await ops.done(execution_id, "capture", {"amount": money("5.00")})
    assert await refused(ops, execution_id, "refund", {"amount": money("5.01")}) == NOT_ALLOWED


async def test_a_refund_before_any_capture_is_refused(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    assert await refused(ops, execution_id, "refund", {}) == NOT_ALLOWED


async def test_a_refund_in_another_currency_is_refused(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    await ops.done(execution_id, "capture", {})
    assert await refused(ops, execution_id, "refund", {"amount": money("5.00", "GBP")}) == INVALID


# --- test amounts ---------------------------------------------------------------------------------
async def prepared(ops: Operations, action: str, ending: str) -> tuple[str, dict[str, object]]:
    """An execution ready for ``action`` and the body whose amount ends in ``ending``."""
    if action == "cancel":  # a cancel moves the whole authorized amount
        return await ops.authorized(f"10.{ending}"), {}
    execution_id = await ops.authorized("20.00")
    if action == "refund":
        await ops.done(execution_id, "capture", {})
    return execution_id, {"amount": money(f"1.{ending}")}


@pytest.mark.parametrize("action", ["capture", "cancel", "refund"])
async def test_an_amount_ending_in_91_fails_the_operation(ops: Operations, action: str) -> None:
    execution_id, body = await prepared(ops, action, "91")
    after = await ops.done(execution_id, action, body)

    (failed,) = [e for e in after["status"] if e["code"] == f"{action}Failed"]
    assert failed["errors"][0]["detail"] == "GenericRejection"
    (details,) = await ops.completions(execution_id, action)
    assert details["success"] is False
    assert details["paymentComposition"][0]["operationResult"] == "GenericRejection"
    assert (await ops.picture(execution_id))["operations"][-1]["state"] == "failed"


@pytest.mark.parametrize("action", ["capture", "cancel", "refund"])
async def test_an_amount_ending_in_92_stays_requested_and_sends_no_webhook(
    ops: Operations, action: str
) -> None:
    execution_id, body = await prepared(ops, action, "92")
    status, ack, _ = await ops.act(execution_id, action, body)
    assert status == 202
    # Another execution's capture, requested later with the same delay, completing proves the
    # sandbox had its chance to complete the first one.
    later = await ops.authorized("20.00")
    await ops.done(later, "capture", {})

    assert (await ops.codes(execution_id))[-1] == f"{action}Requested"
    assert await ops.completions(execution_id, action) == []
    operation = (await ops.picture(execution_id))["operations"][-1]
    assert (operation["actionId"], operation["state"]) == (ack["actionId"], "requested")


@pytest.mark.parametrize("action", ["capture", "cancel", "refund"])
async def test_an_amount_ending_in_93_has_an_unknown_outcome(ops: Operations, action: str) -> None:
    execution_id, body = await prepared(ops, action, "93")
    after = await ops.done(execution_id, action, body)

    (failed,) = [e for e in after["status"] if e["code"] == f"{action}Failed"]
    assert failed["errors"][0]["detail"] == "ProviderTimeout"
    (details,) = await ops.completions(execution_id, action)
    assert details["success"] is False
    assert details["paymentComposition"][0]["operationResult"] == "ProviderTimeout"
    assert (await ops.picture(execution_id))["operations"][-1]["state"] == "unknown"


async def test_an_unknown_refund_keeps_its_amount_reserved(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    await ops.done(execution_id, "capture", {})
    await ops.done(execution_id, "refund", {"amount": money("10.93")})

    assert await refused(ops, execution_id, "refund", {"amount": money("9.08")}) == NOT_ALLOWED
    await ops.done(execution_id, "refund", {"amount": money("9.07")})
    assert (await ops.picture(execution_id))["refunded"] == "9.07"


async def test_a_failed_capture_leaves_its_amount_capturable(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    await ops.done(execution_id, "capture", {"amount": money("5.91")})
    await ops.done(execution_id, "capture", {"amount": money("20.00")})
    assert (await ops.picture(execution_id))["captured"] == "20.00"


async def test_amounts_are_read_in_the_currencys_minor_units(ops: Operations) -> None:
    execution_id = await ops.authorized("1091", "JPY")
    await ops.done(execution_id, "capture", {})
    assert (await ops.codes(execution_id))[-1] == "captureFailed"


# --- idempotency ----------------------------------------------------------------------------------
async def test_a_repeated_key_replays_the_first_answer_and_acts_once(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    key = str(uuid.uuid4())
    body = {"amount": money("5.00"), "final": False}
    first = await ops.act(execution_id, "capture", body, key=key)
    again = await ops.act(execution_id, "capture", body, key=key)

    assert (first[0], again[0]) == (202, 202)
    assert again[1] == first[1]
    assert again[2]["Idempotent-Replayed"] == "true"
    await ops.get(execution_id, wait_while=("captureRequested",))
    assert len((await ops.picture(execution_id))["operations"]) == 1


async def test_a_repeated_key_with_another_body_replays_by_default(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    key = str(uuid.uuid4())
    first = await ops.act(execution_id, "capture", {"amount": money("5.00")}, key=key)
    again = await ops.act(execution_id, "capture", {"amount": money("6.00")}, key=key)

    assert again[1] == first[1]
    assert len((await ops.picture(execution_id))["operations"]) == 1


async def test_a_repeated_key_with_another_body_is_refused_when_configured(
    ops: Operations, sandbox: SandboxHandle
) -> None:
    await sandbox.set_config(idempotency_key_reuse="refuse")
    execution_id = await ops.authorized("20.00")
    key = str(uuid.uuid4())
    body = {"amount": money("5.00"), "final": False}
    await ops.act(execution_id, "capture", body, key=key)
    status, answer, _ = await ops.act(
        execution_id, "capture", {"amount": money("6.00"), "final": False}, key=key
    )
    same = await ops.act(execution_id, "capture", {"final": False, **body}, key=key)

    assert status == 409
    assert answer["errors"][0]["code"] == "request.conflict"
    assert same[0] == 202
    assert len((await ops.picture(execution_id))["operations"]) == 1


# --- answers, shapes, control ---------------------------------------------------------------------
async def test_an_operation_is_answered_202_with_its_action_id_and_next_links(
    ops: Operations,
) -> None:
    execution_id = await ops.authorized("20.00")
    status, ack, _ = await ops.act(execution_id, "capture", {"amount": money("5.00")})

    assert status == 202
    assert ack["name"] == "capture"
    assert ack["links"]["execution"].endswith(execution_id)
    assert set(ack["links"]) >= {"execution", "consumerWait"}
    await ops.get(execution_id, wait_while=("captureRequested",))
    (details,) = await ops.completions(execution_id, "capture")
    assert details["actionId"] == ack["actionId"]


async def test_the_seed_shape_shows_captured_refunded_and_canceled(
    ops: Operations, sandbox: SandboxHandle
) -> None:
    await sandbox.set_config(status_shape="seed")
    captured = await ops.authorized("20.00")
    await ops.done(captured, "capture", {"amount": money("5.00"), "final": False})
    after_capture = (await ops.get(captured))["status"]
    await ops.done(captured, "capture", {})
    await ops.done(captured, "refund", {})
    after_refund = (await ops.get(captured))["status"]
    voided = await ops.authorized("20.00")
    await ops.done(voided, "cancel", {})

    assert (after_capture, after_refund) == ("captured", "refunded")
    assert (await ops.get(voided))["status"] == "canceled"


async def test_the_documented_shape_lists_every_operations_statuses(ops: Operations) -> None:
    execution_id = await ops.authorized("20.00")
    await ops.done(execution_id, "capture", {})
    await ops.done(execution_id, "refund", {"amount": money("2.00")})
    await ops.done(execution_id, "cancel", {})

    assert (await ops.codes(execution_id))[3:] == [
        "captureRequested",
        "captureSuccessful",
        "refundRequested",
        "refundSuccessful",
        "cancelRequested",
        "cancelSuccessful",
    ]


async def test_the_money_picture_of_an_unknown_execution_is_404(
    ops: Operations, sandbox: SandboxHandle
) -> None:
    async with ops.raw.http.get(f"{sandbox.url}/_sandbox/executions/{uuid.uuid4()}") as answer:
        assert answer.status == 404


async def test_operation_webhooks_are_signed_and_name_their_action(
    ops: Operations, sandbox: SandboxHandle, settings: Settings
) -> None:
    async with running_receiver() as receiver:
        await sandbox.set_config(webhook_url=receiver.url)
        execution_id = await ops.authorized("20.00")
        await ops.done(execution_id, "capture", {})
        await ops.done(execution_id, "refund", {"amount": money("4.00")})
        await ops.done(execution_id, "cancel", {})
        received = [await receiver.next() for _ in range(4)]

    keys = settings.payrails_webhook_keys
    for delivery in received:
        assert delivery.signature is not None
        assert verify_signature(delivery.body, delivery.signature, keys) == 0
    details = [delivery.payload["details"] for delivery in received]
    assert [d["action"] for d in details] == ["authorize", "capture", "refund", "cancel"]
    assert {d["execution"]["id"] for d in details} == {execution_id}
    assert [d["paymentComposition"][0]["operationType"] for d in details[1:]] == [
        "Capture",
        "Refund",
        "Cancel",
    ]
    assert [d["amount"]["value"] for d in details[1:]] == ["20.00", "4.00", "16.00"]
    assert {received[0].payload["event"], received[3].payload["event"]} == {
        "executionActionCompleted"
    }


async def test_capture_mode_can_be_changed_at_runtime_and_is_validated(
    sandbox: SandboxHandle,
) -> None:
    assert (await sandbox.set_config(captureMode="Manual"))["captureMode"] == "manual"
    with pytest.raises(RuntimeError, match="400"):
        await sandbox.set_config(captureMode="sometimes")
