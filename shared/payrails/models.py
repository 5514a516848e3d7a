"""The typed Execution model: one reading of both status shapes Payrails is known to send.

The published API sends ``status`` as an array of ``{code, time}`` whose order means nothing
(sort by ``time``); the integration guide shows a plain string such as ``"authorized"``. Both
normalise to one ``ExecutionOutcome``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from shared.errors import InvalidPayload
from shared.money import Money, is_currency
from shared.payrails.payment_record import PaymentRecord, payment_record


class ExecutionOutcome(StrEnum):
    """What the execution says about the authorization, in our words."""

    PENDING = "pending"  # created / authorizeRequested: not decided yet
    ACTION_REQUIRED = "action_required"  # authorizePending with a 3-D Secure URL
    SUCCEEDED = "succeeded"  # authorizeSuccessful (or a later capture)
    FAILED = "failed"  # authorizeFailed with a decline
    UNKNOWN = "unknown"  # the PSP's result is unknown: manual review, never auto-retry


_ANY_PRECISION = re.compile(r"^[0-9]{1,30}(\.[0-9]{1,30})?\Z")  # ASCII digits, bounded

# Results where money may or may not have moved (payrails-api-facts 2.6).
UNKNOWN_RESULTS = frozenset(
    {
        "Unknown",
        "Timeout",
        "ProviderTimeout",
        "UnexpectedProviderResponse",
        "ProviderUnknownError",
        "ProviderConnectionError",
    }
)
SUCCESS_CODES = frozenset(
    {"authorizeSuccessful", "captureSuccessful", "captureRequested", "capturePending"}
)
FAILED_CODES = frozenset({"authorizeFailed"})
ACTION_CODES = frozenset({"authorizePending"})
# The integration guide's string statuses.
_SEED_STATUS: dict[str, ExecutionOutcome] = {
    "created": ExecutionOutcome.PENDING,
    "processing": ExecutionOutcome.PENDING,
    "authorizeRequested": ExecutionOutcome.PENDING,
    "pending": ExecutionOutcome.ACTION_REQUIRED,
    "authorizePending": ExecutionOutcome.ACTION_REQUIRED,
    "actionRequired": ExecutionOutcome.ACTION_REQUIRED,
    "authorized": ExecutionOutcome.SUCCEEDED,
    "captured": ExecutionOutcome.SUCCEEDED,
    "authorizeSuccessful": ExecutionOutcome.SUCCEEDED,
    "failed": ExecutionOutcome.FAILED,
    "declined": ExecutionOutcome.FAILED,
    "authorizeFailed": ExecutionOutcome.FAILED,
    "unknown": ExecutionOutcome.UNKNOWN,
    # Later actions on an authorized execution, as the array shape reads them too.
    "canceled": ExecutionOutcome.SUCCEEDED,
    "cancelled": ExecutionOutcome.SUCCEEDED,
    "refunded": ExecutionOutcome.SUCCEEDED,
}


@dataclass(frozen=True, slots=True)
class StatusEntry:
    code: str
    time: datetime


def parse_time(raw: object) -> datetime:
    """Parse an ISO-8601 timestamp (``Z`` allowed); naive times are taken as UTC."""
    if not isinstance(raw, str):
        raise InvalidPayload(f"time {raw!r} is not a string")
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidPayload(f"time {raw!r} is not ISO-8601") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _statuses(raw: object) -> tuple[StatusEntry, ...]:
    if not isinstance(raw, list):
        return ()
    entries = [
        StatusEntry(str(item["code"]), parse_time(item.get("time")))
        for item in raw
        if isinstance(item, Mapping) and isinstance(item.get("code"), str)
    ]
    return tuple(sorted(entries, key=lambda e: e.time))


def _payment_status_unknown(body: Mapping[str, Any]) -> bool:
    """True when the latest payment's own status is ``Unknown``, whatever its operationResult."""
    items = body.get("payments")
    if isinstance(items, list) and items and isinstance(items[-1], Mapping):
        return items[-1].get("status") == "Unknown"
    return False


def _operation_result(body: Mapping[str, Any]) -> str | None:
    """The latest PSP operation result or payment status the execution carries, if any."""
    for key in ("payments", "paymentComposition"):
        items = body.get(key)
        if isinstance(items, list) and items and isinstance(items[-1], Mapping):
            last = items[-1]
            for field_name in ("operationResult", "status"):
                value = last.get(field_name)
                if isinstance(value, str):
                    return value
    result = body.get("operationResult")
    return result if isinstance(result, str) else None


def _threeds_url(body: Mapping[str, Any]) -> str | None:
    """requiredAction.href, else links.redirect, else links["3ds"]; never links.consumerWait."""
    required = body.get("requiredAction")
    if isinstance(required, Mapping):
        href = required.get("href")
        if isinstance(href, str) and href:
            return href
    links = body.get("links")
    if isinstance(links, Mapping):
        for name in ("redirect", "3ds"):
            value = links.get(name)
            if isinstance(value, Mapping):
                value = value.get("href")
            if isinstance(value, str) and value:
                return value
    return None


def _money(raw: object) -> Money | None:
    """The execution's amount when it carries a readable one, compared with the order's.

    Payrails documents amounts as decimal strings "of any precision", so ``129.9`` reads as
    ``129.90`` here rather than being lost, which would hide a mismatch.
    """
    if not isinstance(raw, Mapping):
        return None
    value, currency = raw.get("value"), raw.get("currency")
    try:
        return Money.parse(value, currency)
    except InvalidPayload:
        pass
    readable = isinstance(value, str) and _ANY_PRECISION.match(value) is not None
    if readable and isinstance(currency, str) and is_currency(currency):
        return Money(Decimal(str(value)), currency)
    return None


def _current_attempt(statuses: tuple[StatusEntry, ...]) -> tuple[StatusEntry, ...]:
    """The statuses of the latest authorize attempt, in time order.

    An ``authorizeRequested`` timed after a deciding status (a success or a decline) starts a
    new attempt: the earlier attempt's decision no longer speaks for the execution.
    """
    start = 0
    decided_at: datetime | None = None
    for index, entry in enumerate(statuses):
        if entry.code in SUCCESS_CODES or entry.code in FAILED_CODES:
            decided_at = entry.time
        elif (
            entry.code == "authorizeRequested"
            and decided_at is not None
            and entry.time > decided_at
        ):
            start, decided_at = index, None
    return statuses[start:]


def _outcome_from_codes(statuses: tuple[StatusEntry, ...]) -> ExecutionOutcome:
    """Read the latest attempt's meaningful status.

    Within one attempt the decision wins, so a trailing authorizePending after a decline is noise;
    before any decision, authorizePending asks for the shopper and anything else is pending.
    """
    attempt = _current_attempt(statuses)
    decided: StatusEntry | None = None
    for entry in attempt:
        if entry.code in SUCCESS_CODES or entry.code in FAILED_CODES:
            decided = entry
    if decided is not None:
        ok = decided.code in SUCCESS_CODES
        return ExecutionOutcome.SUCCEEDED if ok else ExecutionOutcome.FAILED
    if attempt and attempt[-1].code in ACTION_CODES:
        return ExecutionOutcome.ACTION_REQUIRED
    return ExecutionOutcome.PENDING


@dataclass(frozen=True, slots=True)
class Execution:
    """One execution as we understand it, whichever shape Payrails answered with."""

    id: str
    merchant_reference: str | None
    outcome: ExecutionOutcome
    latest_code: str | None
    statuses: tuple[StatusEntry, ...] = ()
    threeds_url: str | None = None
    action_required: str | None = None
    operation_result: str | None = None
    amount: Money | None = None
    payment: PaymentRecord | None = None  # what the books need; never more of a card than 4 digits
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        return self.outcome in (
            ExecutionOutcome.SUCCEEDED,
            ExecutionOutcome.FAILED,
            ExecutionOutcome.UNKNOWN,
        )

    @classmethod
    def from_api(cls, body: object) -> Execution:
        """Normalise a GET/POST execution body; raise InvalidPayload if it is not one with an id.

        ``body`` is whatever the reply decoded to: None for an empty or non-JSON 2xx answer.
        """
        if not isinstance(body, Mapping):
            raise InvalidPayload("execution response is not a JSON object")
        execution_id = body.get("id")
        if not isinstance(execution_id, str) or not execution_id:
            raise InvalidPayload("execution has no id")
        raw_status = body.get("status")
        statuses = _statuses(raw_status)
        if isinstance(raw_status, str):
            outcome = _SEED_STATUS.get(raw_status, ExecutionOutcome.PENDING)
            latest: str | None = raw_status
        else:
            outcome = _outcome_from_codes(statuses)
            latest = statuses[-1].code if statuses else None
        result = _operation_result(body)
        url = _threeds_url(body)
        action = body.get("actionRequired") if isinstance(body.get("actionRequired"), str) else None
        unknown = result in UNKNOWN_RESULTS or _payment_status_unknown(body)
        if unknown and outcome is not ExecutionOutcome.SUCCEEDED:
            outcome = ExecutionOutcome.UNKNOWN
        elif outcome is ExecutionOutcome.ACTION_REQUIRED and url is None:
            outcome = ExecutionOutcome.PENDING  # paused, but nothing for the shopper to do yet
        money = _money(body.get("amount"))
        return cls(
            id=execution_id,
            merchant_reference=body.get("merchantReference")
            if isinstance(body.get("merchantReference"), str)
            else None,
            outcome=outcome,
            latest_code=latest,
            statuses=statuses,
            threeds_url=url if outcome is ExecutionOutcome.ACTION_REQUIRED else None,
            action_required=action,
            operation_result=result,
            amount=money,
            payment=payment_record(body),
            raw=body,
        )
