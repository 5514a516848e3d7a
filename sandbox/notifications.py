"""Webhook bodies in Payrails' documented envelope."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sandbox.executions import Payment, SandboxExecution, iso, payment_error
from sandbox.operations import Operation
from shared.event_registry import ACTION_COMPLETED, ACTION_PENDING
from shared.money import Money


def action_completed(
    execution: SandboxExecution,
    *,
    action: str,
    action_id: str,
    success: bool,
    amount: Money | None,
    payments: Sequence[Payment],
) -> dict[str, Any]:
    """``executionActionCompleted``: one action (authorize, capture, ...) has finished."""
    details: dict[str, Any] = {
        "action": action,
        "actionId": action_id,
        "success": success,
        "execution": execution.reference(),
        "paymentComposition": [payment.composition(action.title()) for payment in payments],
    }
    if amount is not None:
        details["amount"] = amount.to_json()
    if not success:
        failed = [p for p in payments if not p.success]
        details["errors"] = [payment_error(p.operation_result) for p in failed[-1:]] or [
            payment_error("GenericRejection")
        ]
    return _envelope(ACTION_COMPLETED, execution, details)


def operation_completed(
    execution: SandboxExecution, operation: Operation, payments: Sequence[Payment]
) -> dict[str, Any]:
    """``executionActionCompleted`` for a capture, cancel or refund, with ``details.action``."""
    result = operation.result or "Success"
    success = result == "Success"
    composition = []
    for payment in payments:
        item = payment.composition(operation.action.title())
        item.update(operationResult=result, success=success, amount=operation.amount.to_json())
        item.pop("errors", None)
        if not success:
            item["errors"] = [payment_error(result)]
        composition.append(item)
    details: dict[str, Any] = {
        "action": operation.action,
        "actionId": operation.action_id,
        "success": success,
        "execution": execution.reference(),
        "amount": operation.amount.to_json(),
        "paymentComposition": composition,
    }
    if not success:
        details["errors"] = [payment_error(result)]
    return _envelope(ACTION_COMPLETED, execution, details)


def action_pending(
    execution: SandboxExecution, *, action_id: str, href: str, payments: Sequence[Payment]
) -> dict[str, Any]:
    """``executionActionPending``: a 3-D Secure challenge paused the authorize."""
    authorization = execution.authorization
    details: dict[str, Any] = {
        "action": "authorize",
        "actionId": action_id,
        "execution": execution.reference(),
        "actionRequired": "3ds",
        "requiredAction": {"type": "redirect", "href": href},
        "paymentComposition": [payment.composition() for payment in payments],
    }
    if authorization is not None:
        details["amount"] = authorization.amount.to_json()
    return _envelope(ACTION_PENDING, execution, details)


def _envelope(event: str, execution: SandboxExecution, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "event": event,
        "time": iso(datetime.now(UTC)),
        "workspaceId": execution.workspace_id,
        "eventTrigger": "action",
        "details": details,
    }
