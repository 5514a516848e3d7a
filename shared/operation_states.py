"""Payment operations (authorize, capture, cancel, refund) and how Payrails reports their states.

    requested -> in_flight -> succeeded | failed | unknown

An operation's state only moves to a higher rank; the three terminal states share the top and
never change again, except by a person's verdict on an unknown one. ``unknown`` means money may
or may not have moved: it goes to manual review, never to an automatic second call.

Payrails names an action's statuses ``<action>Requested``, ``<action>Pending``,
``<action>Successful`` and ``<action>Failed`` (payrails-api-facts 2.5): a ``captureFailed`` or a
``refundFailed`` is a failure of that operation, never a success.
"""

from __future__ import annotations

from enum import StrEnum

from shared.payrails.models import UNKNOWN_RESULTS


class OperationKind(StrEnum):
    """A Payrails write on an execution; the value is the Payrails action's name."""

    AUTHORIZE = "authorize"
    CAPTURE = "capture"
    CANCEL = "cancel"
    REFUND = "refund"


class OperationState(StrEnum):
    REQUESTED = "requested"  # stored with its idempotency key, Payrails not called yet
    IN_FLIGHT = "in_flight"  # Payrails accepted it (202) or reports it in progress
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"  # money may have moved: manual review


class CaptureMode(StrEnum):
    """Who captures an authorization: Payrails at once (its default), or the merchant."""

    INSTANT = "instant"
    MANUAL = "manual"


STATE_RANK: dict[OperationState, int] = {
    OperationState.REQUESTED: 0,
    OperationState.IN_FLIGHT: 1,
    OperationState.SUCCEEDED: 2,
    OperationState.FAILED: 2,
    OperationState.UNKNOWN: 2,
}
TERMINAL_STATES = frozenset(
    {OperationState.SUCCEEDED, OperationState.FAILED, OperationState.UNKNOWN}
)
# Not decided yet: the amount is reserved against the invariants until it is.
PENDING_STATES = frozenset({OperationState.REQUESTED, OperationState.IN_FLIGHT})
# The verdicts a person may give an operation whose outcome was unknown.
VERDICTS = frozenset({OperationState.SUCCEEDED, OperationState.FAILED})

_SUFFIXES: dict[str, OperationState] = {
    "Requested": OperationState.IN_FLIGHT,
    "Pending": OperationState.IN_FLIGHT,
    "Successful": OperationState.SUCCEEDED,
    "Failed": OperationState.FAILED,
}
STATUS_CODES: dict[str, tuple[OperationKind, OperationState]] = {
    f"{kind.value}{suffix}": (kind, state)
    for kind in OperationKind
    for suffix, state in _SUFFIXES.items()
}
# The integration guide's string statuses that name a completed operation.
SEED_STATUSES: dict[str, tuple[OperationKind, OperationState]] = {
    "authorized": (OperationKind.AUTHORIZE, OperationState.SUCCEEDED),
    "captured": (OperationKind.CAPTURE, OperationState.SUCCEEDED),
    "refunded": (OperationKind.REFUND, OperationState.SUCCEEDED),
    "canceled": (OperationKind.CANCEL, OperationState.SUCCEEDED),
    "cancelled": (OperationKind.CANCEL, OperationState.SUCCEEDED),
}


def with_result(state: OperationState, result_code: str | None) -> OperationState:
    """``state`` given the operation's result: an unknown-family result makes any state but
    ``succeeded`` unknown, as on the authorize path (a Payrails-reported success stands)."""
    if result_code in UNKNOWN_RESULTS and state is not OperationState.SUCCEEDED:
        return OperationState.UNKNOWN
    return state


def from_status_code(
    code: str, result_code: str | None = None
) -> tuple[OperationKind, OperationState] | None:
    """The operation and state an execution status code reports; None for any other code."""
    found = STATUS_CODES.get(code) or SEED_STATUSES.get(code)
    if found is None:
        return None
    kind, state = found
    return kind, with_result(state, result_code)


def from_completion(success: bool, result_code: str | None = None) -> OperationState:
    """The state an ``executionActionCompleted`` reports with ``details.success``."""
    state = OperationState.SUCCEEDED if success else OperationState.FAILED
    return with_result(state, result_code)
