"""Capture, cancel and refund operations of one execution: what each asked for and became."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sandbox.amounts import OperationOutcome
from shared.money import Money

ACTIONS = ("capture", "cancel", "refund")


class OperationState(StrEnum):
    REQUESTED = "requested"  # accepted (202), not completed: in flight, or timed out for ever
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # nothing moved
    UNKNOWN = "unknown"  # the PSP's answer is unknown: the money may or may not have moved

    @property
    def in_doubt(self) -> bool:
        """Still holds its amount: it may have moved (or may yet move) the money."""
        return self in (OperationState.REQUESTED, OperationState.UNKNOWN)


@dataclass(slots=True)
class Operation:
    """One capture, cancel or refund. ``amount`` is what it moves; a cancel also splits it into
    the uncaptured part it voids and the captured part it refunds."""

    action: str
    action_id: str
    amount: Money
    outcome: OperationOutcome
    requested_at: datetime
    final: bool = True  # a capture that closes capturing (Payrails' default)
    automatic: bool = False  # the instant/delayed capture Payrails did by itself
    voids: Decimal = Decimal(0)
    refunds: Decimal = Decimal(0)
    state: OperationState = OperationState.REQUESTED
    result: str | None = None  # operationResult once completed
    completed_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "action": self.action,
            "actionId": self.action_id,
            "amount": self.amount.to_json(),
            "state": self.state.value,
            "operationResult": self.result,
            "automatic": self.automatic,
            "requestedAt": _iso(self.requested_at),
            "completedAt": _iso(self.completed_at) if self.completed_at else None,
        }
        if self.action == "capture":
            body["final"] = self.final
        if self.action == "cancel":
            body["voids"] = Money(self.voids, self.amount.currency).format_value()
            body["refunds"] = Money(self.refunds, self.amount.currency).format_value()
        return body


def _iso(moment: datetime) -> str:
    """Payrails' timestamp form: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
