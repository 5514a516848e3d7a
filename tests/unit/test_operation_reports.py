"""Reading Payrails' reports on captures, cancels and refunds, without services."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

from shared.db.models import PaymentOperation
from shared.errors import InvalidPayload
from shared.events import WebhookEvent
from shared.operation_messages import ROUTING_KEYS, operation_message_id
from shared.operation_states import OperationKind, OperationState
from shared.payrails.errors import PayrailsError, error_from_response
from shared.payrails.models import Execution
from worker.operation_events import confirms, reported_action, settled_from_execution
from worker.operations import ExecuteCommand, refused


def event(action: str, *, success: bool | None, result: str = "Success") -> WebhookEvent:
    details: dict[str, Any] = {
        "action": action,
        "actionId": "act-1",
        "execution": {"id": "exec-1", "merchantReference": "ord_1"},
        "amount": {"value": "5.00", "currency": "EUR"},
        "paymentComposition": [{"operationType": action.title(), "operationResult": result}],
    }
    if success is not None:
        details["success"] = success
    body = {"event": "executionActionCompleted", "time": "2026-12-02T10:00:00Z", "details": details}
    return WebhookEvent.from_body(json.dumps(body).encode())


def execution(*codes: str, failed_detail: str = "GenericRejection") -> Execution:
    statuses: list[dict[str, Any]] = [
        {"code": "authorizeSuccessful", "time": "2026-12-02T10:00:00Z"}
    ]
    for second, code in enumerate(codes, start=1):
        entry: dict[str, Any] = {"code": code, "time": f"2026-12-02T10:00:{second:02d}Z"}
        if code.endswith("Failed"):
            entry["errors"] = [{"detail": failed_detail}]
        statuses.append(entry)
    return Execution.from_api({"id": "exec-1", "status": statuses})


def operation(op_id: int, kind: OperationKind, state: OperationState) -> PaymentOperation:
    return PaymentOperation(
        id=op_id,
        order_id=1,
        kind=kind,
        state=state,
        amount_value=Decimal("5.00"),
        currency="EUR",
        final=True if kind is OperationKind.CAPTURE else None,
        idempotency_key=uuid.uuid4(),
    )


@pytest.mark.parametrize(
    ("success", "result", "state"),
    [
        (True, "Success", OperationState.SUCCEEDED),
        (False, "GenericRejection", OperationState.FAILED),
        (False, "ProviderTimeout", OperationState.UNKNOWN),
        (None, "Pending", OperationState.IN_FLIGHT),
    ],
)
def test_a_capture_report_reads_failed_as_failure_and_provider_timeout_as_unknown(
    success: bool | None, result: str, state: OperationState
) -> None:
    report = reported_action(event("capture", success=success, result=result))

    assert report is not None
    assert (report.kind, report.state, report.result_code) == (OperationKind.CAPTURE, state, result)
    assert report.action_id == "act-1"
    assert report.amount is not None
    assert report.amount.value == Decimal("5.00")


def test_an_authorize_report_is_no_operation_report() -> None:
    assert reported_action(event("authorize", success=True)) is None


def test_a_success_is_confirmed_only_while_the_execution_shows_one_more_than_applied() -> None:
    report = reported_action(event("refund", success=True))
    assert report is not None
    done = [operation(1, OperationKind.REFUND, OperationState.SUCCEEDED)]

    assert confirms(execution("refundSuccessful"), report, [], None)
    assert not confirms(execution("refundSuccessful"), report, done, None)
    assert confirms(execution("refundSuccessful", "refundSuccessful"), report, done, None)
    assert not confirms(execution("refundRequested"), report, [], None)


def test_the_seed_shape_cannot_contradict_a_report() -> None:
    report = reported_action(event("capture", success=True))
    assert report is not None

    assert confirms(Execution.from_api({"id": "exec-1", "status": "authorized"}), report, [], None)


def test_the_sweep_settles_one_pending_operation_by_the_new_code() -> None:
    rows = [
        operation(1, OperationKind.CAPTURE, OperationState.SUCCEEDED),
        operation(2, OperationKind.CAPTURE, OperationState.IN_FLIGHT),
    ]

    assert settled_from_execution(
        execution("captureSuccessful", "captureSuccessful"), OperationKind.CAPTURE, rows
    ) == [(2, OperationState.SUCCEEDED, "Success")]
    assert settled_from_execution(
        execution("captureSuccessful", "captureFailed", failed_detail="ProviderTimeout"),
        OperationKind.CAPTURE,
        rows,
    ) == [(2, OperationState.UNKNOWN, "ProviderTimeout")]
    assert settled_from_execution(execution("captureSuccessful"), OperationKind.CAPTURE, rows) == []


def test_the_sweep_leaves_two_pending_operations_with_mixed_new_codes_in_flight() -> None:
    rows = [
        operation(1, OperationKind.REFUND, OperationState.IN_FLIGHT),
        operation(2, OperationKind.REFUND, OperationState.IN_FLIGHT),
    ]
    mixed = execution("refundSuccessful", "refundFailed")

    assert settled_from_execution(mixed, OperationKind.REFUND, rows) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (7, ExecuteCommand(operation_id=7)),
        ("42", ExecuteCommand(operation_id=42)),
        (
            "7d2f0c1e-8c51-4f0e-9a3b-2d5a1c9e0b7f",
            ExecuteCommand(key=uuid.UUID("7d2f0c1e-8c51-4f0e-9a3b-2d5a1c9e0b7f")),
        ),
    ],
)
def test_an_operation_command_names_the_row_by_id_or_by_its_key(
    raw: object, expected: ExecuteCommand
) -> None:
    command = ExecuteCommand.from_body(json.dumps({"operationId": raw}).encode())

    assert command == expected
    assert ExecuteCommand.from_body(command.to_body()) == command


@pytest.mark.parametrize("raw", [None, 0, -1, True, "", "not-an-id", 1.5])
def test_an_operation_command_without_a_usable_id_is_invalid(raw: object) -> None:
    with pytest.raises(InvalidPayload):
        ExecuteCommand.from_body(json.dumps({"operationId": raw}).encode())


def _error(status: int, code: str) -> PayrailsError:
    return error_from_response("capture", status, {"errors": [{"code": code}]})


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "workflow.action.not-allowed", True),
        (400, "request.validation-error", True),
        (409, "request.conflict", False),
        (408, "request.timeout", False),
        (503, "service.unavailable", False),
    ],
)
def test_only_a_refusal_that_proves_nothing_happened_fails_an_operation(
    status: int, code: str, expected: bool
) -> None:
    assert refused(_error(status, code)) is expected


def test_each_outcome_has_its_own_stable_message_id() -> None:
    ids = {operation_message_id(1, state) for state in OperationState}

    assert len(ids) == len(OperationState)
    assert operation_message_id(1, OperationState.SUCCEEDED) == operation_message_id(
        1, OperationState.SUCCEEDED
    )
    assert ROUTING_KEYS[(OperationKind.CAPTURE, OperationState.FAILED)] == "order.capture_failed"
