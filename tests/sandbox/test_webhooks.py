"""Webhooks from the sandbox: signed, in the documented envelope, retried, duplicated, reordered.

Waits are event-driven: the receiver's queue, and the control API's long-polled delivery status.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
from collections.abc import AsyncIterator

import aiohttp
import pytest

from ingress.signature import verify_signature
from sandbox.config import SandboxConfig
from sandbox.control_client import SandboxHandle
from sandbox.server import running_sandbox
from shared.payrails.client import PayrailsClient, open_payrails_client
from tests.conftest import sandbox_config_for
from tests.payrails.flows import APPROVE, CHALLENGE, DECLINE, authorize_card
from tests.sandbox.receiver import Receiver, running_receiver
from tests.settings import Settings


@pytest.fixture
async def receiver(sandbox: SandboxHandle) -> AsyncIterator[Receiver]:
    async with running_receiver() as receiver:
        await sandbox.set_config(webhook_url=receiver.url)
        yield receiver


@pytest.fixture
async def own_receiver() -> AsyncIterator[Receiver]:
    """A receiver for a test that starts its own sandbox."""
    async with running_receiver() as receiver:
        yield receiver


@pytest.fixture
async def holding_sandbox(
    settings: Settings, own_receiver: Receiver
) -> AsyncIterator[SandboxHandle]:
    """A sandbox whose webhook faults come from SANDBOX_WEBHOOK_HOLD_RATE=1: it holds them all."""
    from_env = SandboxConfig.from_env({"SANDBOX_WEBHOOK_HOLD_RATE": "1"})
    config = dataclasses.replace(
        sandbox_config_for(settings), webhook_url=own_receiver.url, faults=from_env.faults
    )
    async with running_sandbox(config) as running, aiohttp.ClientSession() as session:
        yield SandboxHandle(running, session)


async def test_completed_webhook_is_signed_and_verifies_with_the_ingress_verifier(
    payrails: PayrailsClient, sandbox: SandboxHandle, receiver: Receiver, settings: Settings
) -> None:
    await authorize_card(payrails, sandbox, APPROVE)
    received = await receiver.next()

    key = settings.payrails_webhook_keys[0].material
    expected = base64.b64encode(hmac.new(key, received.body, hashlib.sha256).digest()).decode()
    assert received.signature is not None
    assert hmac.compare_digest(received.signature, expected)
    assert verify_signature(received.body, received.signature, settings.payrails_webhook_keys) == 0


async def test_completed_webhook_carries_the_documented_envelope(
    payrails: PayrailsClient, sandbox: SandboxHandle, receiver: Receiver, settings: Settings
) -> None:
    execution = await authorize_card(payrails, sandbox, APPROVE)
    payload = (await receiver.next()).payload
    details = payload["details"]

    assert payload["event"] == "executionActionCompleted"
    assert payload["workspaceId"] == settings.payrails_workspace_id
    assert payload["eventTrigger"] == "action"
    assert payload["time"].endswith("Z")
    assert (details["action"], details["success"]) == ("authorize", True)
    assert details["execution"]["id"] == execution.id
    assert details["execution"]["merchantReference"] == execution.merchant_reference
    assert set(details["execution"]) >= {"holderReference", "workflowCode", "meta"}
    assert details["amount"] == {"value": "12.50", "currency": "EUR"}
    assert details["paymentComposition"][0]["operationResult"] == "Success"
    assert details["actionId"]


async def test_challenge_sends_a_pending_webhook_with_the_challenge_url(
    payrails: PayrailsClient, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    execution = await authorize_card(payrails, sandbox, CHALLENGE)
    payload = (await receiver.next()).payload
    assert payload["event"] == "executionActionPending"
    assert payload["details"]["requiredAction"]["href"] == execution.threeds_url


async def test_pending_webhooks_can_be_switched_off(
    payrails: PayrailsClient, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    await sandbox.set_config(pending_webhooks=False)
    execution = await authorize_card(payrails, sandbox, CHALLENGE)
    await sandbox.answer_challenge(execution.id, complete=True)
    assert (await receiver.next()).payload["event"] == "executionActionCompleted"
    assert await sandbox.deliveries(event="executionActionPending") == []


async def test_failed_deliveries_are_retried_until_one_succeeds(
    payrails: PayrailsClient, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    receiver.answers.extend([500, 503])
    await authorize_card(payrails, sandbox, APPROVE)
    bodies = [(await receiver.next()).body for _ in range(3)]
    (delivery,) = await sandbox.deliveries()
    delivered = await sandbox.wait_for_delivery(delivery["id"], "delivered")

    assert len(set(bodies)) == 1
    assert delivered["attempts"] == 3


async def test_delivery_fails_after_the_retry_schedule_runs_out(
    payrails: PayrailsClient, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    await sandbox.set_config(webhook_retry_schedule_seconds=[0.01, 0.01])
    receiver.answers.extend([500, 500, 500])
    await authorize_card(payrails, sandbox, APPROVE)
    (delivery,) = await sandbox.deliveries()
    failed = await sandbox.wait_for_delivery(delivery["id"], "failed")
    assert (failed["attempts"], failed["lastStatus"]) == (3, 500)


async def test_duplicated_delivery_arrives_twice_with_the_same_body(
    payrails: PayrailsClient, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    await sandbox.set_faults({"webhooks": {"duplicate_rate": 1.0}})
    await authorize_card(payrails, sandbox, APPROVE)
    first, second = await receiver.next(), await receiver.next()
    original, duplicate = await sandbox.deliveries()

    assert first.body == second.body
    assert first.signature == second.signature
    assert duplicate["duplicateOf"] == original["id"]


async def test_held_delivery_is_overtaken_by_a_later_event_until_released(
    payrails: PayrailsClient, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    await sandbox.set_faults({"webhooks": {"hold_rate": 1.0}})
    held = await authorize_card(payrails, sandbox, APPROVE)
    await sandbox.clear_faults()
    prompt = await authorize_card(payrails, sandbox, APPROVE)
    first = await receiver.next()
    (delivery,) = await sandbox.deliveries(execution_id=held.id)
    assert delivery["status"] == "held"

    await sandbox.release(delivery["id"])
    second = await receiver.next()

    arrival = [r.payload["details"]["execution"]["id"] for r in (first, second)]
    assert arrival == [prompt.id, held.id]
    await sandbox.wait_for_delivery(delivery["id"], "delivered")


async def test_hold_rate_from_the_environment_lets_the_completion_overtake_the_pending_event(
    settings: Settings, holding_sandbox: SandboxHandle, own_receiver: Receiver
) -> None:
    sandbox = holding_sandbox
    client_settings = settings.model_copy(update={"payrails_base_url": sandbox.url})
    async with open_payrails_client(client_settings) as payrails:
        execution = await authorize_card(payrails, sandbox, CHALLENGE)
    (pending,) = await sandbox.deliveries(execution_id=execution.id)
    assert (pending["event"], pending["status"]) == ("executionActionPending", "held")

    await sandbox.clear_faults()
    await sandbox.answer_challenge(execution.id, complete=True)
    first = await own_receiver.next()
    await sandbox.release(pending["id"])
    second = await own_receiver.next()

    arrival = [received.payload["event"] for received in (first, second)]
    assert arrival == ["executionActionCompleted", "executionActionPending"]
    assert {r.payload["details"]["execution"]["id"] for r in (first, second)} == {execution.id}
    await sandbox.wait_for_delivery(pending["id"], "delivered")


async def test_releasing_a_delivery_that_is_not_held_is_refused(
    payrails: PayrailsClient, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    await authorize_card(payrails, sandbox, APPROVE)
    (delivery,) = await sandbox.deliveries()
    await sandbox.wait_for_delivery(delivery["id"], "delivered")
    with pytest.raises(RuntimeError, match="got 409"):
        await sandbox.release(delivery["id"])


async def test_delayed_delivery_is_still_delivered(
    payrails: PayrailsClient, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    await sandbox.set_faults(
        {"webhooks": {"delay_rate": 1.0, "delay_min_seconds": 0.05, "delay_max_seconds": 0.05}}
    )
    execution = await authorize_card(payrails, sandbox, APPROVE)
    (delivery,) = await sandbox.deliveries()
    assert delivery["delaySeconds"] == 0.05
    assert (await receiver.next()).payload["details"]["execution"]["id"] == execution.id
    await sandbox.wait_for_delivery(delivery["id"], "delivered")


async def test_delivery_that_times_out_is_retried_and_delivered(
    payrails: PayrailsClient, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    await sandbox.set_config(webhook_timeout_seconds=0.2)
    receiver.stalls = 1
    await authorize_card(payrails, sandbox, APPROVE)
    (delivery,) = await sandbox.deliveries()

    delivered = await sandbox.wait_for_delivery(delivery["id"], "delivered")

    assert delivered["attempts"] == 2
    tries = [(attempt["status"], attempt["error"]) for attempt in delivered["history"]]
    assert tries == [(None, "TimeoutError"), (200, None)]


async def test_resend_of_a_delivery_still_being_retried_is_refused(
    payrails: PayrailsClient, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    await sandbox.set_config(webhook_retry_schedule_seconds=[60.0])
    receiver.answers.append(500)
    await authorize_card(payrails, sandbox, APPROVE)
    await receiver.next()
    (delivery,) = await sandbox.deliveries()

    with pytest.raises(RuntimeError, match="got 409"):
        await sandbox.resend(delivery["id"])
    assert (await sandbox.delivery(delivery["id"]))["status"] == "pending"


async def test_decline_webhook_carries_the_payment_error(
    payrails: PayrailsClient, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    await authorize_card(payrails, sandbox, DECLINE)
    details = (await receiver.next()).payload["details"]

    assert (details["action"], details["success"]) == ("authorize", False)
    assert details["errors"] == [
        {
            "id": "err-InsufficientBalance",
            "title": "execution.payment-method.failed",
            "detail": "InsufficientBalance",
        }
    ]
    assert details["paymentComposition"][0]["operationResult"] == "InsufficientBalance"


async def test_dropped_delivery_is_listed_and_can_be_resent(
    payrails: PayrailsClient, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    await sandbox.set_faults({"webhooks": {"drop_rate": 1.0}})
    execution = await authorize_card(payrails, sandbox, APPROVE)
    (dropped,) = await sandbox.deliveries(execution_id=execution.id)
    assert dropped["status"] == "dropped"
    assert receiver.queue.empty()

    await sandbox.resend(dropped["id"])
    received = await receiver.next()
    assert received.payload["details"]["execution"]["id"] == execution.id
    await sandbox.wait_for_delivery(dropped["id"], "delivered")
