"""Each money invariant refuses the request that breaks it, with its own error, before any call."""

from __future__ import annotations

import itertools
import uuid
from decimal import Decimal

import pytest

from shared.money import Money
from shared.money_picture import MoneyPicture, Operation
from shared.money_requests import (
    AlreadyAuthorized,
    AmountInvalid,
    CaptureClosed,
    CaptureNotManual,
    CurrencyMismatch,
    ExceedsAuthorized,
    ExceedsCaptured,
    MoneyConflict,
    MoneyRuleError,
    NotAuthorized,
    OperationInProgress,
    OrderCancelled,
    OutcomeUnknown,
    PartialCancel,
    RequestInvalid,
    check_request,
)
from shared.operation_states import CaptureMode, OperationKind, OperationState

CAPTURE, CANCEL, REFUND, AUTHORIZE = (
    OperationKind.CAPTURE,
    OperationKind.CANCEL,
    OperationKind.REFUND,
    OperationKind.AUTHORIZE,
)
OK, IN_FLIGHT, FAILED, UNKNOWN = (
    OperationState.SUCCEEDED,
    OperationState.IN_FLIGHT,
    OperationState.FAILED,
    OperationState.UNKNOWN,
)
_ids = itertools.count(1)


def eur(value: str) -> Money:
    return Money(Decimal(value), "EUR")


def op(kind: OperationKind, value: str, state: OperationState, *, final: bool = True) -> Operation:
    return Operation(next(_ids), kind, Decimal(value), uuid.uuid4(), state, final=final)


def paid(*operations: Operation, authorized: str = "100.00") -> MoneyPicture:
    """An order authorized for ``authorized`` EUR, captured manually, with ``operations``."""
    return MoneyPicture("EUR", operations, Decimal(authorized), CaptureMode.MANUAL)


def test_a_partial_capture_within_the_authorization_is_accepted() -> None:
    assert check_request(paid(), CAPTURE, eur("30.00")) == Decimal("30.00")


def test_a_capture_without_amount_captures_what_remains() -> None:
    picture = paid(op(CAPTURE, "30.00", OK, final=False))
    assert check_request(picture, CAPTURE, None) == Decimal("70.00")


def test_several_partial_refunds_are_accepted_up_to_the_captured_amount() -> None:
    picture = paid(op(CAPTURE, "60.00", OK), op(REFUND, "20.00", OK), op(REFUND, "15.00", OK))
    assert check_request(picture, REFUND, eur("25.00")) == Decimal("25.00")
    assert check_request(picture, REFUND, None) == Decimal("25.00")


def test_a_cancel_before_capture_voids_the_authorization() -> None:
    assert check_request(paid(), CANCEL, None) == Decimal("100.00")


def test_a_cancel_after_capture_refunds_what_is_not_refunded_yet() -> None:
    picture = paid(op(CAPTURE, "60.00", OK), op(REFUND, "20.00", OK))
    assert check_request(picture, CANCEL, None) == Decimal("40.00")


REFUSALS: list[tuple[str, MoneyPicture, OperationKind, Money | None, type[MoneyRuleError]]] = [
    ("capture beyond the authorization", paid(), CAPTURE, eur("100.01"), ExceedsAuthorized),
    (
        "captures in flight count against the authorization",
        paid(op(CAPTURE, "80.00", IN_FLIGHT, final=False)),
        CAPTURE,
        eur("20.01"),
        ExceedsAuthorized,
    ),
    (
        "nothing left to capture",
        paid(op(CAPTURE, "100.00", OK, final=False)),
        CAPTURE,
        None,
        ExceedsAuthorized,
    ),
    ("capture before authorization", paid(authorized="0"), CAPTURE, None, NotAuthorized),
    ("cancel before authorization", paid(authorized="0"), CANCEL, None, NotAuthorized),
    (
        "capture after the final one",
        paid(op(CAPTURE, "10.00", OK)),
        CAPTURE,
        eur("1.00"),
        CaptureClosed,
    ),
    (
        "capture while a final one is in flight",
        paid(op(CAPTURE, "10.00", IN_FLIGHT)),
        CAPTURE,
        eur("1.00"),
        CaptureClosed,
    ),
    (
        "capture on instant capture",
        MoneyPicture("EUR", (), Decimal("100.00"), CaptureMode.INSTANT),
        CAPTURE,
        None,
        CaptureNotManual,
    ),
    ("refund before capture", paid(), REFUND, None, ExceedsCaptured),
    (
        "refund beyond the captured amount",
        paid(op(CAPTURE, "50.00", OK), op(REFUND, "30.00", OK)),
        REFUND,
        eur("20.01"),
        ExceedsCaptured,
    ),
    (
        "refunds in flight count against the captured amount",
        paid(op(CAPTURE, "50.00", OK), op(REFUND, "30.00", IN_FLIGHT)),
        REFUND,
        eur("20.01"),
        ExceedsCaptured,
    ),
    (
        "capture while another capture's outcome is unknown",
        paid(op(CAPTURE, "10.00", UNKNOWN, final=False)),
        CAPTURE,
        eur("1.00"),
        OutcomeUnknown,
    ),
    (
        "refund while another refund's outcome is unknown",
        paid(op(CAPTURE, "50.00", OK), op(REFUND, "10.00", UNKNOWN)),
        REFUND,
        eur("1.00"),
        OutcomeUnknown,
    ),
    ("refund after a full cancel", paid(op(CANCEL, "100.00", OK)), REFUND, None, OrderCancelled),
    ("capture after a full cancel", paid(op(CANCEL, "100.00", OK)), CAPTURE, None, OrderCancelled),
    ("cancel after a full cancel", paid(op(CANCEL, "100.00", OK)), CANCEL, None, OrderCancelled),
    (
        "capture while a cancel is in flight",
        paid(op(CANCEL, "100.00", IN_FLIGHT)),
        CAPTURE,
        None,
        OperationInProgress,
    ),
    (
        "cancel while a capture is in flight",
        paid(op(CAPTURE, "10.00", IN_FLIGHT)),
        CANCEL,
        None,
        OperationInProgress,
    ),
    (
        "cancel while a refund's outcome is unknown",
        paid(op(CAPTURE, "50.00", OK), op(REFUND, "10.00", UNKNOWN)),
        CANCEL,
        None,
        OutcomeUnknown,
    ),
    (
        "cancel after everything captured was refunded",
        paid(op(CAPTURE, "50.00", OK), op(REFUND, "50.00", OK)),
        CANCEL,
        None,
        ExceedsCaptured,
    ),
    ("cancel of a partial amount", paid(), CANCEL, eur("10.00"), PartialCancel),
    ("another currency", paid(), CAPTURE, Money(Decimal("10.00"), "USD"), CurrencyMismatch),
    ("a zero amount", paid(), CAPTURE, eur("0.00"), AmountInvalid),
    ("a negative amount", paid(), CAPTURE, eur("-1.00"), AmountInvalid),
    ("more digits than the minor units", paid(), CAPTURE, eur("1.005"), AmountInvalid),
    ("more integer digits than stored", paid(), CAPTURE, eur("1" + "0" * 14), AmountInvalid),
    ("an amount beyond any precision", paid(), CAPTURE, eur("1E+40"), AmountInvalid),
    ("a second authorize", paid(), AUTHORIZE, eur("100.00"), AlreadyAuthorized),
    (
        "authorize while one is in flight",
        paid(op(AUTHORIZE, "100.00", IN_FLIGHT), authorized="0"),
        AUTHORIZE,
        eur("100.00"),
        OperationInProgress,
    ),
    (
        "authorize while one's outcome is unknown",
        paid(op(AUTHORIZE, "100.00", UNKNOWN), authorized="0"),
        AUTHORIZE,
        eur("100.00"),
        OutcomeUnknown,
    ),
]


@pytest.mark.parametrize(
    ("picture", "kind", "amount", "error"),
    [case[1:] for case in REFUSALS],
    ids=[case[0] for case in REFUSALS],
)
def test_a_request_that_breaks_an_invariant_is_refused_with_its_own_error(
    picture: MoneyPicture,
    kind: OperationKind,
    amount: Money | None,
    error: type[MoneyRuleError],
) -> None:
    with pytest.raises(error) as raised:
        check_request(picture, kind, amount)
    assert type(raised.value) is error


def test_request_errors_map_to_422_and_conflicts_to_409() -> None:
    for _, _, _, _, error in REFUSALS:
        expected = 422 if issubclass(error, RequestInvalid) else 409
        assert issubclass(error, RequestInvalid | MoneyConflict)
        assert error.status == expected
        assert error.code not in {"request_invalid", "money_conflict", "money_rule"}


def test_a_failed_capture_frees_its_amount_and_does_not_close_capture() -> None:
    picture = paid(op(CAPTURE, "100.00", FAILED))
    assert check_request(picture, CAPTURE, None) == Decimal("100.00")


def test_a_failed_cancel_leaves_the_order_open() -> None:
    picture = paid(op(CANCEL, "100.00", FAILED))
    assert check_request(picture, CAPTURE, eur("10.00")) == Decimal("10.00")


def test_a_refusal_names_what_remains() -> None:
    picture = paid(op(CAPTURE, "50.00", OK), op(REFUND, "30.00", OK))
    with pytest.raises(ExceedsCaptured, match=r"20\.00 EUR remains"):
        check_request(picture, REFUND, eur("20.01"))


def test_a_zero_decimal_currency_refuses_a_fraction() -> None:
    picture = MoneyPicture("JPY", (), Decimal(1500), CaptureMode.MANUAL)
    with pytest.raises(AmountInvalid, match="0 decimal places"):
        check_request(picture, CAPTURE, Money(Decimal("10.5"), "JPY"))
    assert check_request(picture, CAPTURE, Money(Decimal(1500), "JPY")) == Decimal(1500)
