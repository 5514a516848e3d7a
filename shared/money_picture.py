"""An order's authoritative money picture: its operations, and the amounts they add up to.

The amounts are never stored apart from the operations that make them: authorized, captured
and refunded are the sums of the succeeded operations of each kind. An operation's terminal
state is applied once, and a replayed, duplicated or reordered report changes nothing, so the
picture is the same whatever order the reports arrive in, and nothing is counted twice.

A successful cancel voids what was not captured and refunds what was: after it, everything
captured counts as refunded.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum

from shared.money import Money
from shared.operation_states import (
    PENDING_STATES,
    STATE_RANK,
    TERMINAL_STATES,
    VERDICTS,
    CaptureMode,
    OperationKind,
    OperationState,
)

ZERO = Decimal(0)
SUCCEEDED = OperationState.SUCCEEDED


@dataclass(frozen=True, slots=True)
class Operation:
    """One Payrails write on the order, with the amount it moves in the order's currency."""

    id: int
    kind: OperationKind
    amount: Decimal
    idempotency_key: uuid.UUID
    state: OperationState = OperationState.REQUESTED
    result_code: str | None = None
    final: bool = True  # a capture: no other capture may follow
    reason: str | None = None  # why it went to review

    @property
    def is_pending(self) -> bool:
        return self.state in PENDING_STATES


@dataclass(frozen=True, slots=True)
class MoneyPicture:
    """The order's operations in its one currency, and the totals they make."""

    currency: str
    operations: tuple[Operation, ...] = ()
    # Authorized by the checkout's authorize path, which records no operation yet.
    checkout_authorized: Decimal = ZERO
    capture_mode: CaptureMode = CaptureMode.INSTANT

    def of(self, kind: OperationKind, *states: OperationState) -> tuple[Operation, ...]:
        return tuple(op for op in self.operations if op.kind is kind and op.state in states)

    def total(self, kind: OperationKind, *states: OperationState) -> Decimal:
        return sum((op.amount for op in self.of(kind, *states)), ZERO)

    def pending(self, kind: OperationKind) -> Decimal:
        """The amount operations of ``kind`` not decided yet would move."""
        return self.total(kind, *PENDING_STATES)

    def has_unknown(self, kind: OperationKind) -> bool:
        return bool(self.of(kind, OperationState.UNKNOWN))

    @property
    def authorized(self) -> Decimal:
        return self.checkout_authorized + self.total(
            OperationKind.AUTHORIZE, OperationState.SUCCEEDED
        )

    @property
    def captured(self) -> Decimal:
        return self.total(OperationKind.CAPTURE, OperationState.SUCCEEDED)

    @property
    def cancelled(self) -> bool:
        return bool(self.of(OperationKind.CANCEL, OperationState.SUCCEEDED))

    @property
    def refunded(self) -> Decimal:
        if self.cancelled:
            return self.captured  # the cancel refunded whatever the refunds had not
        return self.total(OperationKind.REFUND, OperationState.SUCCEEDED)

    @property
    def capture_closed(self) -> bool:
        """A final capture succeeded or may still: no capture may follow it."""
        return any(op.final for op in self.of(OperationKind.CAPTURE, *PENDING_STATES, SUCCEEDED))

    def money(self, value: Decimal) -> Money:
        return Money(value, self.currency)

    def operation(self, operation_id: int) -> Operation | None:
        return next((op for op in self.operations if op.id == operation_id), None)

    def with_operation(self, operation: Operation) -> MoneyPicture:
        """The picture with ``operation`` added, or put in place of the one with its id."""
        others = tuple(op for op in self.operations if op.id != operation.id)
        ordered = tuple(sorted((*others, operation), key=lambda op: op.id))
        return replace(self, operations=ordered)


def show(money: Money) -> str:
    """``12.50 EUR``: the value with its currency's minor digits, whatever its stored scale."""
    return f"{money.format_value()} {money.currency}"


def violations(picture: MoneyPicture) -> list[str]:
    """The money invariants ``picture`` breaks; empty when it holds."""
    found: list[str] = []
    captured, authorized = picture.money(picture.captured), picture.money(picture.authorized)
    refunded = picture.money(picture.refunded)
    if captured.value > authorized.value:
        found.append(f"captured {show(captured)} exceeds authorized {show(authorized)}")
    if refunded.value > captured.value:
        found.append(f"refunded {show(refunded)} exceeds captured {show(captured)}")
    authorizations = len(picture.of(OperationKind.AUTHORIZE, SUCCEEDED))
    if authorizations + (picture.checkout_authorized > 0) > 1:
        found.append("the order is authorized more than once")
    return found


@dataclass(frozen=True, slots=True)
class OperationReport:
    """What Payrails says about one operation: its state, result code and the amount it moved."""

    operation_id: int
    state: OperationState
    result_code: str | None = None
    reported: Money | None = None


class Applied(StrEnum):
    """What one report did to the picture."""

    APPLIED = "applied"  # the operation moved forward
    IGNORED = "ignored"  # older, equal or a replay: nothing changed
    CONFLICT = "conflict"  # another terminal state than the one applied: nothing changed
    REVIEW = "review"  # a success that breaks an invariant: the operation is unknown instead
    MISSING = "missing"  # no such operation on this order


def _mismatch(op: Operation, reported: Money | None, currency: str) -> str | None:
    if reported is None:
        return None
    if reported.currency != currency or reported.value != op.amount:
        stored = show(Money(op.amount, currency))
        return f"Payrails reports {show(reported)} for an operation of {stored}"
    return None


def apply_report(picture: MoneyPicture, report: OperationReport) -> tuple[MoneyPicture, Applied]:
    """The picture after ``report``, and what the report did."""
    op = picture.operation(report.operation_id)
    if op is None:
        return picture, Applied.MISSING
    if op.state in TERMINAL_STATES:
        later = report.state in TERMINAL_STATES and report.state is not op.state
        return picture, Applied.CONFLICT if later else Applied.IGNORED
    if STATE_RANK[report.state] <= STATE_RANK[op.state]:
        return picture, Applied.IGNORED
    moved = replace(op, state=report.state, result_code=report.result_code or op.result_code)
    if report.state is SUCCEEDED:
        problem = _mismatch(op, report.reported, picture.currency)
        problems = [problem] if problem else violations(picture.with_operation(moved))
        if problems:
            flagged = replace(moved, state=OperationState.UNKNOWN, reason="; ".join(problems))
            return picture.with_operation(flagged), Applied.REVIEW
    return picture.with_operation(moved), Applied.APPLIED


class VerdictRefused(ValueError):
    """A person's verdict that cannot be applied to the operation or would break an invariant."""


def resolve_unknown(
    picture: MoneyPicture, operation_id: int, verdict: OperationState, note: str
) -> MoneyPicture:
    """A person's verdict on an unknown operation: the one way out of a terminal state."""
    op = picture.operation(operation_id)
    if op is None or op.state is not OperationState.UNKNOWN or verdict not in VERDICTS:
        raise VerdictRefused(f"operation {operation_id} has no unknown outcome to resolve")
    resolved = picture.with_operation(replace(op, state=verdict, reason=note))
    problems = violations(resolved)
    if problems:
        raise VerdictRefused("; ".join(problems))
    return resolved
