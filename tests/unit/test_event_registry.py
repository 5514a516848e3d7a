"""The event registry: one entry per Payrails event type, and how the worker handles it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox import notifications
from sandbox.amounts import OperationOutcome
from sandbox.executions import Payment, SandboxExecution
from sandbox.operations import Operation
from shared.event_registry import (
    EVENT_NAMES,
    REGISTRY,
    Handling,
    event_label,
    handling,
)
from shared.events import WebhookEvent
from shared.money import Money

# What each event was handled as before the registry: these three re-polled and applied,
# every other name (known or not) recorded in the inbox as ignored and acked.
TODAY = {
    "executionActionCompleted": Handling.RECONCILE,
    "executionActionPending": Handling.RECONCILE,
    "executionActionUpdated": Handling.RECONCILE,
    "executionCreated": Handling.STORE,
    "executionActionRequested": Handling.STORE,
    "ruleEngineExecuted": Handling.STORE,
    "networkOffersEnrollmentCompleted": Handling.STORE,
}
# details.action values: Payrails' documented ones, none, and one it never sends.
ACTIONS = [None, "authorize", "confirm", "capture", "cancel", "refund", "payout"]
SANDBOX_ACTIONS = ["authorize", "capture", "cancel", "refund"]  # what the sandbox completes


def _execution() -> SandboxExecution:
    return SandboxExecution(
        id="exec-1",
        workflow_code="payment-acceptance",
        merchant_reference="order-1",
        holder_reference="holder-1",
        workspace_id="ws-1",
        meta={},
        created_at=datetime.now(UTC),
    )


def _payment() -> Payment:
    return Payment(
        id="pay-1",
        instrument_id="ins-1",
        method_code="card",
        amount=Money(Decimal("10.00"), "EUR"),
        provider_id="psp",
        status="Authorized",
        operation_result="Success",
    )


def _sandbox_bodies() -> list[dict[str, object]]:
    """One body of every kind the sandbox sends."""
    execution, payments = _execution(), [_payment()]
    bodies: list[dict[str, object]] = [
        notifications.action_pending(
            execution, action_id="a-0", href="https://x", payments=payments
        )
    ]
    for action in SANDBOX_ACTIONS:
        for success in (True, False):
            bodies.append(
                notifications.action_completed(
                    execution,
                    action=action,
                    action_id="a-1",
                    success=success,
                    amount=Money(Decimal("10.00"), "EUR"),
                    payments=payments,
                )
            )
        for result in ("Success", "GenericRejection", "ProviderTimeout"):
            operation = Operation(
                action=action,
                action_id="a-2",
                amount=Money(Decimal("10.00"), "EUR"),
                outcome=OperationOutcome.SUCCEED,
                requested_at=datetime.now(UTC),
                result=result,
            )
            bodies.append(notifications.operation_completed(execution, operation, payments))
    return bodies


def test_every_event_the_sandbox_sends_is_registered() -> None:
    for body in _sandbox_bodies():
        assert body["event"] in EVENT_NAMES
        event = WebhookEvent.from_body(json.dumps(body).encode())
        assert event.is_reconciled, body["event"]


def test_the_registry_holds_exactly_the_events_handled_before_it() -> None:
    assert set(TODAY) == EVENT_NAMES


@pytest.mark.parametrize(("name", "expected"), sorted(TODAY.items()))
@pytest.mark.parametrize("action", ACTIONS)
def test_each_known_event_keeps_its_handling_whatever_the_action(
    name: str, expected: Handling, action: str | None
) -> None:
    assert handling(name, action) is expected
    body = {"event": name, "details": {"execution": {"id": "e"}}}
    if action is not None:
        body["details"]["action"] = action  # type: ignore[index]
    event = WebhookEvent.from_body(json.dumps(body).encode())
    assert event.is_reconciled is (expected is Handling.RECONCILE)
    assert event_label(name) == name


@pytest.mark.parametrize("action", ACTIONS)
def test_an_unknown_event_is_stored_not_reconciled(action: str | None) -> None:
    assert handling("disputeCreated", action) is Handling.STORE
    assert handling("executionactioncompleted", action) is Handling.STORE  # names are exact
    assert event_label("disputeCreated") == "other"


def test_an_entry_for_one_action_wins_over_the_names_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = {**REGISTRY, ("executionActionCompleted", "refund"): Handling.STORE}
    monkeypatch.setattr("shared.event_registry.REGISTRY", registry)
    assert handling("executionActionCompleted", "refund") is Handling.STORE
    assert handling("executionActionCompleted", "capture") is Handling.RECONCILE
    assert handling("executionActionCompleted") is Handling.RECONCILE


@given(st.text(), st.one_of(st.none(), st.text()))
def test_handling_and_labels_never_raise(name: str, action: str | None) -> None:
    assert handling(name, action) in Handling
    assert event_label(name) in EVENT_NAMES | {"other"}
