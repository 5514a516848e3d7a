"""The money picture: reports move operations forward once; Payrails' statuses read exactly."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from shared.money import Money
from shared.money_picture import (
    Applied,
    MoneyPicture,
    Operation,
    OperationReport,
    VerdictRefused,
    apply_report,
    resolve_unknown,
    violations,
)
from shared.operation_states import (
    STATUS_CODES,
    CaptureMode,
    OperationKind,
    OperationState,
    from_completion,
    from_status_code,
)
from shared.payrails.models import UNKNOWN_RESULTS

CAPTURE, REFUND, CANCEL = OperationKind.CAPTURE, OperationKind.REFUND, OperationKind.CANCEL
OK, FAILED, UNKNOWN = OperationState.SUCCEEDED, OperationState.FAILED, OperationState.UNKNOWN
IN_FLIGHT = OperationState.IN_FLIGHT


def picture(*operations: Operation) -> MoneyPicture:
    return MoneyPicture("EUR", operations, Decimal("100.00"), CaptureMode.MANUAL)


def op(op_id: int, kind: OperationKind, value: str, state: OperationState) -> Operation:
    return Operation(op_id, kind, Decimal(value), uuid.uuid4(), state)


def test_a_succeeded_capture_counts_once_however_often_it_is_reported() -> None:
    current = picture(op(1, CAPTURE, "40.00", IN_FLIGHT))
    for _ in range(3):
        current, _ = apply_report(current, OperationReport(1, OK))
    assert current.captured == Decimal("40.00")


def test_a_report_older_than_the_operations_state_is_ignored() -> None:
    current = picture(op(1, CAPTURE, "40.00", OK))
    after, applied = apply_report(current, OperationReport(1, IN_FLIGHT))
    assert (after, applied) == (current, Applied.IGNORED)


def test_a_second_terminal_state_is_a_conflict_that_changes_nothing() -> None:
    current = picture(op(1, CAPTURE, "40.00", FAILED))
    after, applied = apply_report(current, OperationReport(1, OK))
    assert (after, applied) == (current, Applied.CONFLICT)
    assert after.captured == 0


def test_a_report_about_another_operation_is_missing() -> None:
    assert apply_report(picture(), OperationReport(9, OK))[1] is Applied.MISSING


def test_a_success_for_another_amount_goes_to_review_and_is_not_counted() -> None:
    current = picture(op(1, CAPTURE, "40.00", IN_FLIGHT))
    report = OperationReport(1, OK, "Success", Money(Decimal("45.00"), "EUR"))
    after, applied = apply_report(current, report)
    assert applied is Applied.REVIEW
    flagged = after.operation(1)
    assert flagged is not None
    assert flagged.state is UNKNOWN
    assert flagged.reason == "Payrails reports 45.00 EUR for an operation of 40.00 EUR"
    assert after.captured == 0


def test_a_success_that_would_break_an_invariant_goes_to_review() -> None:
    """Two captures stored past the reservation (say, by hand) cannot both count."""
    current = picture(op(1, CAPTURE, "70.00", OK), op(2, CAPTURE, "40.00", IN_FLIGHT))
    after, applied = apply_report(current, OperationReport(2, OK))
    assert applied is Applied.REVIEW
    flagged = after.operation(2)
    assert flagged is not None
    assert flagged.reason == "captured 110.00 EUR exceeds authorized 100.00 EUR"
    assert after.captured == Decimal("70.00")
    assert violations(after) == []


def test_a_refund_reported_before_its_capture_is_flagged_not_applied() -> None:
    current = picture(op(1, REFUND, "10.00", IN_FLIGHT))
    after, applied = apply_report(current, OperationReport(1, OK))
    assert applied is Applied.REVIEW
    assert after.refunded == 0


def test_a_cancel_after_capture_counts_everything_captured_as_refunded() -> None:
    current = picture(op(1, CAPTURE, "60.00", OK), op(2, REFUND, "20.00", OK))
    current = current.with_operation(op(3, CANCEL, "40.00", IN_FLIGHT))
    after, _ = apply_report(current, OperationReport(3, OK))
    assert (after.captured, after.refunded, after.cancelled) == (
        Decimal("60.00"),
        Decimal("60.00"),
        True,
    )


def test_a_person_resolves_an_unknown_operation_once() -> None:
    current = picture(op(1, CAPTURE, "40.00", UNKNOWN))
    resolved = resolve_unknown(current, 1, OK, "the PSP confirms the capture")
    assert resolved.captured == Decimal("40.00")
    with pytest.raises(VerdictRefused):
        resolve_unknown(resolved, 1, FAILED, "changed my mind")


def test_a_verdict_that_breaks_an_invariant_is_refused() -> None:
    current = picture(op(1, CAPTURE, "100.00", OK), op(2, CAPTURE, "1.00", UNKNOWN))
    with pytest.raises(VerdictRefused, match="exceeds authorized"):
        resolve_unknown(current, 2, OK, "looks captured")


@pytest.mark.parametrize("kind", list(OperationKind))
def test_an_actions_failed_status_is_a_failure_never_a_success(kind: OperationKind) -> None:
    assert from_status_code(f"{kind.value}Failed") == (kind, FAILED)
    assert from_status_code(f"{kind.value}Successful") == (kind, OK)
    assert from_status_code(f"{kind.value}Requested") == (kind, IN_FLIGHT)
    assert from_status_code(f"{kind.value}Pending") == (kind, IN_FLIGHT)


def test_the_integration_guides_string_statuses_name_their_operation() -> None:
    assert from_status_code("captured") == (CAPTURE, OK)
    assert from_status_code("refunded") == (REFUND, OK)
    assert from_status_code("canceled") == (CANCEL, OK)
    assert from_status_code("created") is None


@pytest.mark.parametrize("result", sorted(UNKNOWN_RESULTS))
def test_an_unknown_result_makes_any_outcome_but_success_unknown(result: str) -> None:
    assert from_status_code("captureFailed", result) == (CAPTURE, UNKNOWN)
    assert from_status_code("refundRequested", result) == (REFUND, UNKNOWN)
    assert from_status_code("captureSuccessful", result) == (CAPTURE, OK)
    assert from_completion(False, result) is UNKNOWN
    assert from_completion(True, result) is OK


def test_a_completion_reports_success_or_failure() -> None:
    assert from_completion(True, "Success") is OK
    assert from_completion(False, "InsufficientBalance") is FAILED


def test_every_action_has_its_four_status_codes() -> None:
    assert len(STATUS_CODES) == 4 * len(OperationKind)
