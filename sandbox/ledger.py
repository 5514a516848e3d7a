"""The money rules of one execution, as Payrails enforces them on capture, cancel and refund.

Captures never exceed the authorized amount, refunds never exceed the captured amount, a
cancel is never partial (it voids what is not captured and refunds what is), nothing follows a
cancel, and every amount is in the authorized currency. An operation still in flight, or whose
outcome is unknown, keeps its amount reserved: the limits hold whichever way it ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sandbox.errors import invalid, not_allowed
from sandbox.executions import Phase, SandboxExecution
from sandbox.operations import Operation, OperationState
from shared.errors import InvalidPayload
from shared.money import Money

APPROVED = frozenset({Phase.AUTHORIZED, Phase.CAPTURED, Phase.REFUNDED, Phase.CANCELED})


@dataclass(frozen=True, slots=True)
class Plan:
    """An accepted request: the amount it moves and, for a cancel, how that splits."""

    amount: Money
    final: bool = True
    voids: Decimal = Decimal(0)
    refunds: Decimal = Decimal(0)


def authorized(execution: SandboxExecution) -> Money | None:
    """The authorized amount once the authorize succeeded; None before (or after a decline)."""
    if execution.phase not in APPROVED or execution.authorization is None:
        return None
    return execution.authorization.amount


def _in_doubt(execution: SandboxExecution, action: str) -> list[Operation]:
    return [o for o in execution.operations if o.action == action and o.state.in_doubt]


def canceled(execution: SandboxExecution) -> bool:
    return any(
        o.action == "cancel" and o.state is OperationState.SUCCEEDED for o in execution.operations
    )


def capture_closed(execution: SandboxExecution) -> bool:
    """A final capture was accepted (and has not failed): no further capture."""
    return any(
        o.action == "capture" and o.final and o.state is not OperationState.FAILED
        for o in execution.operations
    )


def capturable(execution: SandboxExecution) -> Decimal:
    amount = authorized(execution)
    if amount is None or capture_closed(execution):
        return Decimal(0)
    reserved = sum((o.amount.value for o in _in_doubt(execution, "capture")), Decimal(0))
    return amount.value - execution.captured - reserved


def refundable(execution: SandboxExecution) -> Decimal:
    reserved = sum((o.amount.value for o in _in_doubt(execution, "refund")), Decimal(0))
    return execution.captured - execution.refunded - reserved


def _closed_reason(execution: SandboxExecution) -> str | None:
    """Why no operation at all is possible now, if so."""
    if authorized(execution) is None:
        return f"the execution is {execution.phase}, not authorized"
    if canceled(execution):
        return "the execution is canceled: nothing follows a cancel"
    if _in_doubt(execution, "cancel"):
        return "a cancel of this execution is in flight or its outcome is unknown"
    return None


def plan_capture(execution: SandboxExecution, body: Mapping[str, Any]) -> Plan:
    reason = _closed_reason(execution)
    if reason is not None:
        raise not_allowed(f"capture is not allowed: {reason}")
    final = body.get("final", True)
    if not isinstance(final, bool):
        raise invalid("final must be true or false")
    if capture_closed(execution):
        raise not_allowed("capture is not allowed: a final capture was already made")
    remaining = capturable(execution)
    amount = _amount(execution, body, remaining, "capture", "authorized and not yet captured")
    return Plan(amount, final=final)


def plan_refund(execution: SandboxExecution, body: Mapping[str, Any]) -> Plan:
    reason = _closed_reason(execution)
    if reason is not None:
        raise not_allowed(f"refund is not allowed: {reason}")
    remaining = refundable(execution)
    return Plan(_amount(execution, body, remaining, "refund", "captured and not yet refunded"))


def plan_cancel(execution: SandboxExecution, body: Mapping[str, Any]) -> Plan:
    """Void what is not captured and refund what is; never a partial amount."""
    reason = _closed_reason(execution)
    if reason is not None:
        raise not_allowed(f"cancel is not allowed: {reason}")
    if any(o.state.in_doubt for o in execution.operations):
        raise not_allowed("cancel is not allowed while another action is in flight or unknown")
    total = authorized(execution)
    assert total is not None
    voids = Decimal(0) if capture_closed(execution) else total.value - execution.captured
    refunds = execution.captured - execution.refunded
    if voids + refunds <= 0:
        raise not_allowed("cancel is not allowed: nothing is left to void or refund")
    whole = Money(voids + refunds, total.currency)
    if "amount" in body:
        given = _money(body.get("amount"), total.currency)
        if given.value != whole.value:
            raise not_allowed("cancel cannot be executed on partial amounts")
    return Plan(whole, voids=voids, refunds=refunds)


def next_actions(execution: SandboxExecution) -> list[str]:
    """The operations a request without an amount would be allowed now (the execution's links)."""
    if _closed_reason(execution) is not None:
        return []
    actions = []
    if capturable(execution) > 0:
        actions.append("capture")
    if not any(o.state.in_doubt for o in execution.operations) and (
        (not capture_closed(execution) and authorized_left(execution) > 0)
        or execution.captured > execution.refunded
    ):
        actions.append("cancel")
    if refundable(execution) > 0:
        actions.append("refund")
    return actions


def authorized_left(execution: SandboxExecution) -> Decimal:
    total = authorized(execution)
    return Decimal(0) if total is None else total.value - execution.captured


def apply(execution: SandboxExecution, operation: Operation) -> None:
    """Book a succeeded operation and move the execution's phase and payment status."""
    if operation.action == "capture":
        execution.captured += operation.amount.value
    elif operation.action == "refund":
        execution.refunded += operation.amount.value
    else:
        execution.voided += operation.voids
        execution.refunded += operation.refunds
    execution.phase = _phase(execution)
    status = _payment_status(execution)
    for payment in execution.payments:
        if payment.success:
            payment.status = status


def _phase(execution: SandboxExecution) -> Phase:
    if canceled(execution):
        return Phase.CANCELED
    if execution.captured > 0 and execution.refunded >= execution.captured:
        return Phase.REFUNDED if capture_closed(execution) else Phase.CAPTURED
    return Phase.CAPTURED if execution.captured > 0 else Phase.AUTHORIZED


def _payment_status(execution: SandboxExecution) -> str:
    phase = execution.phase
    if phase is Phase.CANCELED:
        return "Refunded" if execution.captured > 0 else "Canceled"
    return {Phase.REFUNDED: "Refunded", Phase.CAPTURED: "Captured"}.get(phase, "Authorized")


def picture(execution: SandboxExecution) -> dict[str, Any]:
    """The money picture the control API shows: amounts so far and every operation."""
    total = execution.authorization.amount if execution.authorization else None
    currency = total.currency if total else "EUR"

    def written(value: Decimal) -> str:
        return Money(value, currency).format_value()

    approved = authorized(execution)
    return {
        "id": execution.id,
        "merchantReference": execution.merchant_reference,
        "phase": execution.phase.value,
        "captureMode": execution.capture_policy.to_json() if execution.capture_policy else None,
        "currency": total.currency if total else None,
        "authorized": written(approved.value if approved else Decimal(0)),
        "captured": written(execution.captured),
        "refunded": written(execution.refunded),
        "voided": written(execution.voided),
        "canceled": canceled(execution),
        "captureClosed": capture_closed(execution),
        "operations": [operation.to_json() for operation in execution.operations],
    }


def _amount(
    execution: SandboxExecution,
    body: Mapping[str, Any],
    remaining: Decimal,
    action: str,
    what: str,
) -> Money:
    total = authorized(execution)
    assert total is not None
    if "amount" not in body:
        if remaining <= 0:
            raise not_allowed(f"{action} is not allowed: nothing is {what}")
        return Money(remaining, total.currency)
    amount = _money(body.get("amount"), total.currency)
    if amount.value > remaining:
        raise not_allowed(f"{action} amount {amount.value} exceeds the {remaining} {what}")
    return amount


def _money(raw: object, currency: str) -> Money:
    if not isinstance(raw, Mapping):
        raise invalid("amount {value, currency} is required")
    try:
        amount = Money.parse(raw.get("value"), raw.get("currency"))
    except InvalidPayload as exc:
        raise invalid(f"amount: {exc}") from exc
    if amount.currency != currency:
        raise invalid(f"amount.currency {amount.currency} differs from the authorized {currency}")
    return amount
