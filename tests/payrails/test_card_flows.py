"""Every test card end to end through the client, against the sandbox, in both status shapes."""

from __future__ import annotations

import pytest

from sandbox.control_client import SandboxHandle
from shared.payrails.client import PayrailsClient
from shared.payrails.models import ExecutionOutcome
from tests.payrails.flows import (
    AMOUNT,
    APPROVE,
    CASCADE,
    CHALLENGE,
    DECLINE,
    UNKNOWN,
    authorize_card,
    return_url,
)

pytestmark = pytest.mark.parametrize("shape", ["documented", "seed"])


@pytest.fixture
async def shaped(sandbox: SandboxHandle, shape: str) -> SandboxHandle:
    await sandbox.set_config(status_shape=shape)
    return sandbox


async def test_frictionless_card_is_authorized_without_a_redirect(
    payrails: PayrailsClient, shaped: SandboxHandle
) -> None:
    execution = await authorize_card(payrails, shaped, APPROVE)
    assert execution.outcome is ExecutionOutcome.SUCCEEDED
    assert execution.is_terminal
    assert execution.threeds_url is None
    assert execution.amount == AMOUNT
    assert execution.operation_result == "Success"


async def test_challenge_card_pauses_with_a_hosted_page_then_completes(
    payrails: PayrailsClient, shaped: SandboxHandle
) -> None:
    paused = await authorize_card(payrails, shaped, CHALLENGE)
    assert paused.outcome is ExecutionOutcome.ACTION_REQUIRED
    assert paused.threeds_url == f"{shaped.url}/public/3ds/{paused.id}"
    assert paused.action_required == "3ds"

    location = await shaped.answer_challenge(paused.id, complete=True)
    final = await payrails.get_execution(paused.id, wait_while=["authorizePending"])

    assert location == return_url(paused.id)
    assert final.outcome is ExecutionOutcome.SUCCEEDED
    assert final.threeds_url is None


async def test_challenge_failed_by_the_shopper_fails_the_authorization(
    payrails: PayrailsClient, shaped: SandboxHandle
) -> None:
    paused = await authorize_card(payrails, shaped, CHALLENGE)
    await shaped.answer_challenge(paused.id, complete=False)
    final = await payrails.get_execution(paused.id, wait_while=["authorizePending"])
    assert final.outcome is ExecutionOutcome.FAILED
    assert final.operation_result == "PayerAuthenticationFailed"


async def test_declined_card_fails_with_insufficient_balance(
    payrails: PayrailsClient, shaped: SandboxHandle
) -> None:
    execution = await authorize_card(payrails, shaped, DECLINE)
    assert execution.outcome is ExecutionOutcome.FAILED
    assert execution.operation_result == "InsufficientBalance"
    assert execution.threeds_url is None


async def test_cascade_card_challenges_once_then_the_secondary_psp_approves(
    payrails: PayrailsClient, shaped: SandboxHandle
) -> None:
    paused = await authorize_card(payrails, shaped, CASCADE)
    assert paused.outcome is ExecutionOutcome.ACTION_REQUIRED
    await shaped.answer_challenge(paused.id, complete=True)
    final = await payrails.get_execution(paused.id, wait_while=["authorizePending"])

    payments = final.raw["payments"]
    assert final.outcome is ExecutionOutcome.SUCCEEDED
    assert [(p["status"], p["operationResult"]) for p in payments] == [
        ("Failed", "GenericRejection"),
        ("Authorized", "Success"),
    ]
    assert payments[0]["providerId"] != payments[1]["providerId"]
    pending = await shaped.deliveries(event="executionActionPending", execution_id=paused.id)
    assert len(pending) == 1


async def test_unknown_outcome_card_needs_review(
    payrails: PayrailsClient, shaped: SandboxHandle
) -> None:
    execution = await authorize_card(payrails, shaped, UNKNOWN)
    assert execution.outcome is ExecutionOutcome.UNKNOWN
    assert execution.operation_result == "ProviderTimeout"
    assert execution.raw["payments"][-1]["status"] == "Unknown"
