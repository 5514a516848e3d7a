"""The money picture over any ordering and duplication of operation reports.

A history is built as it happens in the service: each operation is requested against the stored
picture (and refused when it breaks an invariant), and Payrails' reports arrive at any time
after, in any order, duplicated, with stale in-progress reports behind the final ones.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.money import Money
from shared.money_picture import (
    Applied,
    MoneyPicture,
    Operation,
    OperationReport,
    apply_report,
    violations,
)
from shared.money_requests import MoneyRuleError, check_request
from shared.operation_states import (
    STATE_RANK,
    TERMINAL_STATES,
    CaptureMode,
    OperationKind,
    OperationState,
)

RESULTS = {
    OperationState.SUCCEEDED: "Success",
    OperationState.FAILED: "GenericRejection",
    OperationState.UNKNOWN: "ProviderTimeout",
}

# Mostly successes: an unknown outcome blocks its kind for the rest of the history.
OUTCOMES = [*[OperationState.SUCCEEDED] * 4, OperationState.FAILED, OperationState.UNKNOWN]


@dataclass
class History:
    """The stored picture as requests and reports reach it, and each operation's true outcome."""

    stored: MoneyPicture
    truth: dict[int, OperationState] = field(default_factory=dict)
    delivered: list[OperationReport] = field(default_factory=list)

    def request(self, kind: OperationKind, cents: int | None, final: bool) -> None:
        amount = None if cents is None else Money(Decimal(cents) / 100, "EUR")
        try:
            value = check_request(self.stored, kind, amount)
        except MoneyRuleError:
            return
        op_id = len(self.truth) + 1
        op = Operation(op_id, kind, value, uuid.uuid4(), final=final)
        self.stored = self.stored.with_operation(op)
        self.truth[op_id] = OperationState.REQUESTED

    def deliver(self, report: OperationReport) -> Applied:
        self.stored, applied = apply_report(self.stored, report)
        self.delivered.append(report)
        return applied


def reports_of(op_id: int, outcome: OperationState) -> list[OperationReport]:
    """What Payrails may say about one operation: in flight, then its outcome."""
    return [
        OperationReport(op_id, OperationState.IN_FLIGHT),
        OperationReport(op_id, outcome, result_code=RESULTS[outcome]),
    ]


CAPTURE, REFUND = OperationKind.CAPTURE, OperationKind.REFUND
# Weighted towards captures and refunds: a cancel or an authorize ends most histories early.
requests = st.tuples(
    st.sampled_from([CAPTURE, CAPTURE, REFUND, REFUND, REFUND, *OperationKind]),
    st.one_of(st.integers(min_value=1, max_value=2500), st.none()),
    st.sampled_from([False, False, True]),  # final: most captures are partial
)


def build_history(data: st.DataObject) -> tuple[History, list[OperationReport]]:
    """A history driven to its end; returns it with the reports still to arrive."""
    authorized = data.draw(
        st.sampled_from([Decimal(0), Decimal("50.00"), Decimal("50.00")]), label="checkout"
    )
    history = History(MoneyPicture("EUR", (), authorized, CaptureMode.MANUAL))
    outstanding: list[OperationReport] = []
    for _ in range(data.draw(st.integers(min_value=4, max_value=24), label="steps")):
        if outstanding and data.draw(st.integers(0, 2), label="deliver now") > 0:
            index = data.draw(st.integers(0, len(outstanding) - 1), label="which")
            assert history.deliver(outstanding.pop(index)) is not Applied.REVIEW
            continue
        before = len(history.truth)
        history.request(*data.draw(requests, label="request"))
        if len(history.truth) > before:
            outcome = data.draw(st.sampled_from(OUTCOMES), label="outcome")
            history.truth[before + 1] = outcome
            outstanding.extend(reports_of(before + 1, outcome))
    return history, outstanding


def arrive(history: History, late: list[OperationReport]) -> list[Applied]:
    """Deliver ``late`` after everything delivered so far, replaying the earlier reports too."""
    return [history.deliver(report) for report in [*late, *history.delivered]]


def states(picture: MoneyPicture) -> dict[int, OperationState]:
    return {op.id: op.state for op in picture.operations}


@settings(max_examples=300)
@given(st.data())
def test_any_ordering_and_duplication_of_reports_ends_in_the_same_picture(
    data: st.DataObject,
) -> None:
    history, outstanding = build_history(data)
    start = history.stored
    doubled = [report for report in outstanding for _ in range(data.draw(st.integers(1, 3)))]
    first = data.draw(st.permutations(doubled), label="first ordering")
    second = data.draw(st.permutations(doubled), label="second ordering")
    applied = arrive(history, first)
    one = history.stored
    other = History(start, dict(history.truth))
    arrive(other, second)
    assert one == other.stored
    assert states(one) == history.truth
    assert Applied.REVIEW not in applied
    assert violations(one) == []


@settings(max_examples=300)
@given(st.data())
def test_an_operation_only_moves_forward_and_a_terminal_state_never_changes(
    data: st.DataObject,
) -> None:
    history, outstanding = build_history(data)
    seen = states(history.stored)
    for report in data.draw(st.permutations(outstanding + outstanding)):
        history.deliver(report)
        now = states(history.stored)
        for op_id, state in now.items():
            was = seen.get(op_id, OperationState.REQUESTED)
            assert STATE_RANK[state] >= STATE_RANK[was]
            if was in TERMINAL_STATES:
                assert state is was
        seen = now


@settings(max_examples=300)
@given(st.data())
def test_the_totals_count_each_succeeded_operation_exactly_once(data: st.DataObject) -> None:
    history, outstanding = build_history(data)
    for report in outstanding:
        history.deliver(report)
    once = history.stored
    arrive(history, [])  # every report replayed
    assert history.stored == once
    succeeded = [op for op in once.operations if op.state is OperationState.SUCCEEDED]

    def total(kind: OperationKind) -> Decimal:
        return sum((op.amount for op in succeeded if op.kind is kind), Decimal(0))

    assert once.captured == total(OperationKind.CAPTURE)
    assert once.authorized == once.checkout_authorized + total(OperationKind.AUTHORIZE)
    if not once.cancelled:
        assert once.refunded == total(OperationKind.REFUND)
    assert once.captured <= once.authorized
    assert once.refunded <= once.captured


@settings(max_examples=200)
@given(st.data())
def test_every_request_the_rules_accept_keeps_the_invariants_whatever_succeeds(
    data: st.DataObject,
) -> None:
    """Operations not decided yet are reserved: any subset of them succeeding is allowed."""
    history, _ = build_history(data)
    pending = [op for op in history.stored.operations if op.is_pending]
    chosen = data.draw(st.lists(st.sampled_from(pending), unique=True) if pending else st.just([]))
    picture = history.stored
    for op in chosen:
        picture, applied = apply_report(picture, OperationReport(op.id, OperationState.SUCCEEDED))
        assert applied is Applied.APPLIED
    assert violations(picture) == []
