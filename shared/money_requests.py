"""The money invariants a new operation must keep, checked before Payrails is called.

A request that would break one is refused with a precise error and never reaches Payrails:
``RequestInvalid`` errors are about the request itself (the API answers 422), ``MoneyConflict``
errors about the order's money picture as it stands (409). Operations not decided yet count as
if they will succeed, so two partial captures in flight can never exceed the authorization
together; an unknown outcome blocks another operation of its kind until a person resolves it.
"""

from __future__ import annotations

from decimal import Decimal

from shared.errors import ReconError
from shared.money import MAX_INTEGER_DIGITS, MINOR_UNITS, Money
from shared.money_picture import ZERO, MoneyPicture, show
from shared.operation_states import PENDING_STATES, CaptureMode, OperationKind


class MoneyRuleError(ReconError):
    """A requested operation breaks a money invariant; ``code`` names which, for the API."""

    status = 409
    code = "money_rule"

    def __init_subclass__(cls, *, status: int | None = None, code: str | None = None) -> None:
        super().__init_subclass__()
        cls.status = status if status is not None else cls.status
        cls.code = code if code is not None else cls.code


class RequestInvalid(MoneyRuleError, status=422, code="request_invalid"):
    """The request itself is wrong for this order, whatever its state."""


class AmountInvalid(RequestInvalid, code="amount_invalid"):
    """Not positive, or not in the currency's minor units."""


class CurrencyMismatch(RequestInvalid, code="currency_mismatch"):
    """Another currency than the order's: currencies are never mixed."""


class PartialCancel(RequestInvalid, code="partial_cancel"):
    """A cancel with an amount: Payrails cancels only in full."""


class MoneyConflict(MoneyRuleError, status=409, code="money_conflict"):
    """The order's money picture, as it stands, does not allow the operation."""


class NotAuthorized(MoneyConflict, code="not_authorized"):
    """Nothing is authorized to capture or cancel."""


class AlreadyAuthorized(MoneyConflict, code="already_authorized"):
    """The order is authorized already: it is paid at most once."""


class ExceedsAuthorized(MoneyConflict, code="exceeds_authorized"):
    """Captured would exceed authorized."""


class ExceedsCaptured(MoneyConflict, code="exceeds_captured"):
    """Refunded would exceed captured."""


class CaptureClosed(MoneyConflict, code="capture_closed"):
    """A final capture succeeded or is in flight: no capture may follow."""


class CaptureNotManual(MoneyConflict, code="capture_not_manual"):
    """The order's capture mode is instant: Payrails captures it, the merchant does not."""


class OrderCancelled(MoneyConflict, code="order_cancelled"):
    """The order is cancelled: nothing may follow a full cancel."""


class OperationInProgress(MoneyConflict, code="operation_in_progress"):
    """Another operation must be decided first."""


class OutcomeUnknown(MoneyConflict, code="outcome_unknown"):
    """An operation's outcome is unknown: a person reviews it, nothing calls Payrails again."""


def check_amount(picture: MoneyPicture, amount: Money) -> Decimal:
    """``amount``'s value, when it is positive, in the order's currency and its minor units."""
    if amount.currency != picture.currency:
        raise CurrencyMismatch(
            f"amount in {amount.currency}, the order's currency is {picture.currency}"
        )
    value = amount.value
    if not value.is_finite() or value <= 0:
        raise AmountInvalid("amount must be positive")
    if value.adjusted() >= MAX_INTEGER_DIGITS:  # before quantize, which such a value overflows
        raise AmountInvalid(f"amount must have at most {MAX_INTEGER_DIGITS} integer digits")
    digits = MINOR_UNITS[picture.currency]
    if value != value.quantize(Decimal(1).scaleb(-digits)):
        raise AmountInvalid(f"{picture.currency} amounts have at most {digits} decimal places")
    return value


def _refuse_after_cancel(picture: MoneyPicture) -> None:
    if picture.cancelled:
        raise OrderCancelled("the order is cancelled; nothing may follow a full cancel")
    if picture.has_unknown(OperationKind.CANCEL):
        raise OutcomeUnknown("a cancel's outcome is unknown and waits for review")
    if picture.of(OperationKind.CANCEL, *PENDING_STATES):
        raise OperationInProgress("a cancel is in flight")


def _refuse_unknown(picture: MoneyPicture, kind: OperationKind) -> None:
    if picture.has_unknown(kind):
        raise OutcomeUnknown(f"a {kind.value}'s outcome is unknown and waits for review")


def _up_to(
    picture: MoneyPicture,
    requested: Decimal | None,
    remaining: Decimal,
    error: type[MoneyConflict],
    what: str,
) -> Decimal:
    """``requested`` (or all that remains) when it fits in ``remaining``."""
    value = remaining if requested is None else requested
    if remaining <= 0 or value > remaining:
        left = show(picture.money(max(remaining, ZERO)))
        raise error(f"{what}; {left} remains")
    return value


def _authorize(picture: MoneyPicture, requested: Decimal | None) -> Decimal:
    _refuse_unknown(picture, OperationKind.AUTHORIZE)
    if picture.authorized > 0:
        raise AlreadyAuthorized("the order is authorized already")
    if picture.of(OperationKind.AUTHORIZE, *PENDING_STATES):
        raise OperationInProgress("an authorize is in flight")
    if requested is None:
        raise AmountInvalid("an authorize needs an amount")
    return requested


def _capture(picture: MoneyPicture, requested: Decimal | None) -> Decimal:
    if picture.authorized <= 0:
        raise NotAuthorized("nothing is authorized to capture")
    if picture.capture_mode is not CaptureMode.MANUAL:
        raise CaptureNotManual("the order's capture mode is instant: Payrails captures it")
    _refuse_unknown(picture, OperationKind.CAPTURE)
    if picture.capture_closed:
        raise CaptureClosed("a final capture succeeded or is in flight")
    remaining = picture.authorized - picture.captured - picture.pending(OperationKind.CAPTURE)
    what = "capture exceeds what is authorized and not captured or being captured"
    return _up_to(picture, requested, remaining, ExceedsAuthorized, what)


def _refund(picture: MoneyPicture, requested: Decimal | None) -> Decimal:
    _refuse_unknown(picture, OperationKind.REFUND)
    remaining = picture.captured - picture.refunded - picture.pending(OperationKind.REFUND)
    what = "refund exceeds what is captured and not refunded or being refunded"
    return _up_to(picture, requested, remaining, ExceedsCaptured, what)


def _cancel(picture: MoneyPicture, requested: Decimal | None) -> Decimal:
    if picture.authorized <= 0:
        raise NotAuthorized("nothing is authorized to cancel")
    for kind in (OperationKind.CAPTURE, OperationKind.REFUND):
        _refuse_unknown(picture, kind)
        if picture.pending(kind):
            raise OperationInProgress(f"a {kind.value} is in flight")
    if picture.captured == 0:
        return picture.authorized  # a void of the authorization
    remaining = picture.captured - picture.refunded
    if remaining <= 0:
        raise ExceedsCaptured("everything captured is refunded already")
    return remaining  # a refund of what was captured and not refunded


_CHECKS = {
    OperationKind.AUTHORIZE: _authorize,
    OperationKind.CAPTURE: _capture,
    OperationKind.REFUND: _refund,
    OperationKind.CANCEL: _cancel,
}


def check_request(picture: MoneyPicture, kind: OperationKind, amount: Money | None) -> Decimal:
    """The amount the operation will move, or the MoneyRuleError that refuses it.

    ``amount`` None asks for everything that remains (a full capture or refund); a cancel never
    takes one.
    """
    if kind is OperationKind.CANCEL and amount is not None:
        raise PartialCancel("a cancel takes no amount: Payrails cancels only in full")
    requested = None if amount is None else check_amount(picture, amount)
    _refuse_after_cancel(picture)
    return _CHECKS[kind](picture, requested)
