"""Reconciling capture, cancel and refund reports: the webhook names the operation, the
re-polled execution confirms it, and ``apply_operation_outcome`` applies it under the order lock.

An ``executionActionCompleted`` (or any reconciled event) whose ``details.action`` is capture,
cancel or refund reports one operation: its ``actionId``, ``success``, ``operationResult`` and
the amount it moved. The operation is found by its Payrails action id, else as the oldest one of
its kind and amount in flight without one. A report that matches neither while an operation of
its kind and amount is still ``requested`` may be about that one, its webhook having overtaken
the commit that stores the action id: the event is retried later (``AWAITING_CALL``) rather than
guessed. A ``captureFailed`` or ``refundFailed`` is a failure of that operation, never a success;
an unknown-family result (``ProviderTimeout``...) makes it ``unknown``, for review.

The execution carries no action ids, only status codes (``captureSuccessful``...), so the
re-poll confirms by counting: a reported success applies only while the execution shows more
``<kind>Successful`` codes than the order has succeeded operations of that kind (a failure the
same with ``<kind>Failed``). A report the execution does not confirm yet leaves the operation in
flight (its action id recorded) for the sweeper. The seed status shape (a plain string) carries
no per-operation codes, so it cannot contradict a report and the report stands.

A report that matches no operation of ours is Payrails' own doing (its instant capture): it is
recorded as an operation of that kind, so the money picture knows every movement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from shared import metrics
from shared.db.models import Order, PaymentOperation
from shared.errors import InvalidPayload
from shared.events import WebhookEvent
from shared.money import Money
from shared.money_picture import Applied
from shared.operation_messages import announce_outcome
from shared.operation_states import (
    STATUS_CODES,
    TERMINAL_STATES,
    OperationKind,
    OperationState,
    from_completion,
    with_result,
)
from shared.operation_store import (
    Outcome,
    apply_operation_outcome,
    awaiting_call,
    match_operation,
    operations_of,
    record_reported_operation,
)
from shared.payrails.models import UNKNOWN_RESULTS, Execution

log = structlog.get_logger(__name__)

OPERATION_ACTIONS = frozenset({OperationKind.CAPTURE, OperationKind.CANCEL, OperationKind.REFUND})


def operation_kind(event: WebhookEvent) -> OperationKind | None:
    """The operation kind an event reports on, or None (an authorize, or no action)."""
    if event.action in {kind.value for kind in OPERATION_ACTIONS}:
        return OperationKind(event.action)
    return None


@dataclass(frozen=True, slots=True)
class ReportedAction:
    """What one webhook says about one capture, cancel or refund."""

    kind: OperationKind
    action_id: str | None
    state: OperationState
    result_code: str | None
    amount: Money | None


def _result_code(details: Mapping[str, Any]) -> str | None:
    items = details.get("paymentComposition")
    for item in items if isinstance(items, list) else ():
        if isinstance(item, Mapping) and isinstance(item.get("operationResult"), str):
            return str(item["operationResult"])
    errors = details.get("errors")
    for error in errors if isinstance(errors, list) else ():
        if isinstance(error, Mapping) and isinstance(error.get("detail"), str):
            return str(error["detail"])[:64]
    return None


def _amount(details: Mapping[str, Any]) -> Money | None:
    raw = details.get("amount")
    if not isinstance(raw, Mapping):
        return None
    try:
        return Money.parse(raw.get("value"), raw.get("currency"))
    except InvalidPayload:
        return None


def reported_action(event: WebhookEvent) -> ReportedAction | None:
    """The operation report an event carries; None when it is not about an operation."""
    kind = operation_kind(event)
    details = event.raw.get("details")
    if kind is None or not isinstance(details, Mapping):
        return None
    action_id = details.get("actionId")
    result = _result_code(details)
    if event.success is None:
        state = with_result(OperationState.IN_FLIGHT, result)
    else:
        state = from_completion(event.success, result)
    return ReportedAction(
        kind=kind,
        action_id=action_id if isinstance(action_id, str) and action_id else None,
        state=state,
        result_code=result,
        amount=_amount(details),
    )


def _same_group(a: OperationState, b: OperationState) -> bool:
    """Succeeded against succeeded, failed or unknown against failed or unknown."""
    return (a is OperationState.SUCCEEDED) == (b is OperationState.SUCCEEDED)


def codes_of(execution: Execution, kind: OperationKind, state: OperationState) -> int:
    """How many status codes of the execution report ``kind`` ending in ``state``'s group."""
    group = OperationState.SUCCEEDED if state is OperationState.SUCCEEDED else OperationState.FAILED
    return sum(1 for entry in execution.statuses if STATUS_CODES.get(entry.code) == (kind, group))


def confirms(
    execution: Execution | None,
    report: ReportedAction,
    rows: Sequence[PaymentOperation],
    matched: PaymentOperation | None,
) -> bool:
    """Whether the re-polled execution shows the reported outcome (module docstring)."""
    if report.state not in TERMINAL_STATES or execution is None:
        return True
    if isinstance(execution.raw.get("status"), str):
        return True  # the seed shape: no per-operation codes to count
    already = sum(
        1
        for row in rows
        if row.kind is report.kind
        and row.state in TERMINAL_STATES
        and _same_group(row.state, report.state)
        and (matched is None or row.id != matched.id)
    )
    return codes_of(execution, report.kind, report.state) > already


class OperationResult(StrEnum):
    """What one operation report did; the recon_operations_reconciled_total outcome."""

    APPLIED = "applied"
    REVIEW = "review"
    IGNORED = "ignored"
    CONFLICT = "conflict"
    RECORDED = "recorded"  # Payrails' own operation, recorded
    UNCONFIRMED = "unconfirmed"  # the execution does not show it yet: left for the sweeper
    UNMATCHED = "unmatched"  # no operation, and nothing to record
    AWAITING_CALL = "awaiting_call"  # maybe about a requested one: the event is retried later


def _result_of(outcome: Outcome | None, recorded: bool) -> OperationResult:
    if outcome is None:
        return OperationResult.UNMATCHED
    if recorded and outcome.applied in (Applied.APPLIED, Applied.REVIEW):
        return OperationResult.RECORDED
    return {
        Applied.APPLIED: OperationResult.APPLIED,
        Applied.REVIEW: OperationResult.REVIEW,
        Applied.CONFLICT: OperationResult.CONFLICT,
    }.get(outcome.applied, OperationResult.IGNORED)


async def apply_and_announce(
    session: AsyncSession,
    order: Order,
    operation_id: int,
    state: OperationState,
    *,
    cause: str,
    result_code: str | None = None,
    reported: Money | None = None,
    action_id: str | None = None,
) -> Outcome | None:
    """``apply_operation_outcome``, and the message for a terminal state it reached."""
    outcome = await apply_operation_outcome(
        session,
        operation_id,
        state,
        result_code=result_code,
        reported=reported,
        action_id=action_id,
    )
    if outcome is not None and outcome.applied in (Applied.APPLIED, Applied.REVIEW):
        await announce_outcome(session, order, outcome.picture, operation_id, cause)
    return outcome


async def reconcile_operation(
    session: AsyncSession, order: Order, event: WebhookEvent, execution: Execution | None
) -> OperationResult | None:
    """Apply one operation report to the locked ``order``; None for an event of no operation."""
    report = reported_action(event)
    if report is None:
        return None
    rows = await operations_of(session, order.id)
    matched = match_operation(rows, report.kind, action_id=report.action_id, amount=report.amount)
    reported = None if report.kind is OperationKind.CANCEL else report.amount
    if not confirms(execution, report, rows, matched):
        if matched is not None:
            await apply_operation_outcome(
                session, matched.id, OperationState.IN_FLIGHT, action_id=report.action_id
            )
        result = OperationResult.UNCONFIRMED
    elif matched is None and awaiting_call(rows, report.kind, report.amount):
        result = OperationResult.AWAITING_CALL
    elif matched is not None:
        outcome = await apply_and_announce(
            session,
            order,
            matched.id,
            report.state,
            cause="webhook",
            result_code=report.result_code,
            reported=reported,
            action_id=report.action_id,
        )
        result = _result_of(outcome, recorded=False)
    elif report.state in TERMINAL_STATES and report.amount is not None:
        outcome = await record_reported_operation(
            session,
            order,
            report.kind,
            report.amount,
            report.state,
            action_id=report.action_id,
            result_code=report.result_code,
        )
        if outcome is not None and outcome.applied in (Applied.APPLIED, Applied.REVIEW):
            newest = max(op.id for op in outcome.picture.operations)
            await announce_outcome(session, order, outcome.picture, newest, "webhook")
        result = _result_of(outcome, recorded=True)
    else:
        result = OperationResult.UNMATCHED
    metrics.OPERATIONS_RECONCILED.labels(report.kind.value, report.state.value, result.value).inc()
    log.info(
        "operation.reconciled",
        kind=report.kind.value,
        action_id=report.action_id,
        reported_state=report.state.value,
        result_code=report.result_code,
        outcome=result.value,
    )
    return result


def latest_failed_result(execution: Execution, kind: OperationKind) -> str | None:
    """The result (errors[].detail) of the execution's latest ``<kind>Failed`` status, if any."""
    raw = execution.raw.get("status")
    entries = [
        item
        for item in (raw if isinstance(raw, list) else ())
        if isinstance(item, Mapping) and item.get("code") == f"{kind.value}Failed"
    ]
    entries.sort(key=lambda item: str(item.get("time", "")))
    for item in reversed(entries):
        errors = item.get("errors")
        for error in errors if isinstance(errors, list) else ():
            detail = error.get("detail") if isinstance(error, Mapping) else None
            if isinstance(detail, str):
                return detail[:64]
    return None


def settled_from_execution(
    execution: Execution, kind: OperationKind, rows: Sequence[PaymentOperation]
) -> list[tuple[int, OperationState, str | None]]:
    """What the execution alone settles for the order's undecided operations of ``kind``.

    Without action ids this is a count: one undecided operation takes the outcome the execution
    shows beyond the decided ones; several are settled only when the new codes all agree.
    Anything ambiguous stays in flight. The seed shape settles nothing.
    """
    if isinstance(execution.raw.get("status"), str):
        return []
    pending = [r for r in rows if r.kind is kind and r.state not in TERMINAL_STATES]
    if not pending:
        return []
    mine = [r for r in rows if r.kind is kind and r.state in TERMINAL_STATES]
    succeeded = sum(1 for r in mine if r.state is OperationState.SUCCEEDED)
    failed = len(mine) - succeeded
    new_successes = codes_of(execution, kind, OperationState.SUCCEEDED) - succeeded
    new_failures = codes_of(execution, kind, OperationState.FAILED) - failed
    result = latest_failed_result(execution, kind)
    failure = OperationState.UNKNOWN if result in UNKNOWN_RESULTS else OperationState.FAILED
    if new_successes >= len(pending) and new_failures <= 0:
        return [(r.id, OperationState.SUCCEEDED, "Success") for r in pending]
    if new_failures >= len(pending) and new_successes <= 0:
        return [(r.id, failure, result) for r in pending]
    if len(pending) == 1 and new_successes + new_failures == 1:
        state = OperationState.SUCCEEDED if new_successes == 1 else failure
        return [(pending[0].id, state, "Success" if new_successes == 1 else result)]
    return []
