"""The order state machine: monotonic, terminal states never change, order-independent."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from shared.money import Money
from shared.payrails.models import UNKNOWN_RESULTS, Execution
from shared.state_machine import (
    RANK,
    REVIEW_VERDICTS,
    TERMINAL,
    Observation,
    OrderStatus,
    decide,
    resolve_review,
    with_reported_unknown,
)

URL = "https://sandbox.example/3ds/x"
observations = st.builds(
    Observation,
    status=st.sampled_from(list(OrderStatus)),
    threeds_url=st.sampled_from([None, URL]),
)


def run(start: OrderStatus, seen: list[Observation]) -> tuple[OrderStatus, list[OrderStatus]]:
    state, path = start, []
    for observed in seen:
        transition = decide(state, observed)
        if transition is not None:
            assert transition.from_status is state
            state = transition.to_status
            path.append(state)
    return state, path


def test_frictionless_goes_straight_from_authorizing_to_paid() -> None:
    transition = decide(OrderStatus.AUTHORIZING, Observation(OrderStatus.PAID))
    assert transition is not None
    assert transition.routing_key == "order.paid"


def test_an_older_state_never_overwrites_a_newer_one() -> None:
    assert decide(OrderStatus.ACTION_REQUIRED, Observation(OrderStatus.AUTHORIZING)) is None


def test_a_challenge_without_url_is_not_a_transition() -> None:
    assert decide(OrderStatus.AUTHORIZING, Observation(OrderStatus.ACTION_REQUIRED)) is None


@given(st.sampled_from(sorted(TERMINAL)), st.lists(observations, max_size=10))
def test_terminal_states_never_change(start: OrderStatus, seen: list[Observation]) -> None:
    assert run(start, seen) == (start, [])


@given(st.sampled_from(list(OrderStatus)), st.lists(observations, max_size=12))
def test_rank_only_ever_increases_and_each_state_is_entered_once(
    start: OrderStatus, seen: list[Observation]
) -> None:
    _, path = run(start, seen)
    ranks = [RANK[start], *(RANK[s] for s in path)]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) == len(ranks)
    assert len(path) == len(set(path))


@given(st.lists(observations, min_size=1, max_size=8), st.randoms())
def test_duplicates_do_not_change_the_outcome(seen: list[Observation], rnd: object) -> None:
    doubled = [o for o in seen for _ in range(3)]
    assert run(OrderStatus.AUTHORIZING, doubled)[0] == run(OrderStatus.AUTHORIZING, seen)[0]


@given(
    st.permutations(
        [
            Observation(OrderStatus.AUTHORIZING),
            Observation(OrderStatus.ACTION_REQUIRED, URL),
            Observation(OrderStatus.PAID),
        ]
    )
)
def test_any_ordering_of_one_executions_observations_ends_paid(seen: list[Observation]) -> None:
    final, path = run(OrderStatus.CREATED, seen)
    assert final is OrderStatus.PAID
    assert path.count(OrderStatus.PAID) == 1


@given(st.sampled_from(list(OrderStatus)), st.sampled_from(list(OrderStatus)))
def test_only_a_needs_review_order_takes_a_persons_verdict(
    current: OrderStatus, verdict: OrderStatus
) -> None:
    transition = resolve_review(current, verdict, "checked with the PSP")
    allowed = current is OrderStatus.NEEDS_REVIEW and verdict in REVIEW_VERDICTS
    assert (transition is not None) is allowed


# --- the amount Payrails authorized against the order's ------------------------------------------
ORDER = Money(Decimal("129.90"), "EUR")
DECIDING = {
    "authorizeSuccessful": OrderStatus.PAID,
    "authorizeFailed": OrderStatus.PAYMENT_FAILED,
    "authorizePending": OrderStatus.AUTHORIZING,  # paused, no challenge URL
    "authorizeRequested": OrderStatus.AUTHORIZING,
}


def execution(code: str, amount: dict[str, Any] | None) -> Execution:
    body: dict[str, Any] = {
        "id": "exec-1",
        "status": [
            {"code": "created", "time": "2026-01-01T10:00:00.000Z"},
            {"code": code, "time": "2026-01-01T10:00:01.000Z"},
        ],
    }
    if amount is not None:
        body["amount"] = amount
    return Execution.from_api(body)


amounts = st.builds(
    Money,
    value=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999.99"), places=2),
    currency=st.sampled_from(["EUR", "USD", "GBP"]),
)


@given(st.sampled_from(sorted(DECIDING)), amounts, amounts)
def test_only_a_success_for_the_orders_exact_amount_is_paid(
    code: str, authorized: Money, expected: Money
) -> None:
    observed = Observation.from_execution(execution(code, authorized.to_json()), expected)
    if DECIDING[code] is not OrderStatus.PAID:
        assert observed.status is DECIDING[code]  # the amount decides nothing else
    elif authorized == expected:
        assert observed == Observation(OrderStatus.PAID)
    else:
        assert observed.status is OrderStatus.NEEDS_REVIEW
        assert observed.reason == (
            f"authorized amount {authorized.format_value()} {authorized.currency} "
            f"differs from the order's {expected.format_value()} {expected.currency}"
        )


@given(amounts)
def test_without_the_orders_amount_nothing_is_compared(authorized: Money) -> None:
    observed = Observation.from_execution(execution("authorizeSuccessful", authorized.to_json()))
    assert observed.status is OrderStatus.PAID


def test_the_issues_example_reads_as_a_mismatch() -> None:
    tiny = execution("authorizeSuccessful", {"value": "0.01", "currency": "EUR"})
    observed = Observation.from_execution(tiny, ORDER)
    assert observed.status is OrderStatus.NEEDS_REVIEW
    assert observed.reason == "authorized amount 0.01 EUR differs from the order's 129.90 EUR"


def test_the_same_value_in_another_currency_is_a_mismatch() -> None:
    other = execution("authorizeSuccessful", {"value": "129.90", "currency": "USD"})
    assert Observation.from_execution(other, ORDER).status is OrderStatus.NEEDS_REVIEW


def test_an_amount_written_at_another_precision_still_matches() -> None:
    """Payrails documents amounts of any precision: 129.9 is the order's 129.90."""
    for value in ("129.9", "129.900"):
        same = execution("authorizeSuccessful", {"value": value, "currency": "EUR"})
        assert Observation.from_execution(same, ORDER).status is OrderStatus.PAID
    off = execution("authorizeSuccessful", {"value": "129.901", "currency": "EUR"})
    assert Observation.from_execution(off, ORDER).status is OrderStatus.NEEDS_REVIEW


def test_an_absent_amount_is_not_compared_but_an_unreadable_one_goes_to_review() -> None:
    absent = execution("authorizeSuccessful", None)
    assert Observation.from_execution(absent, ORDER).status is OrderStatus.PAID
    garbled = execution("authorizeSuccessful", {"value": "lots", "currency": "EUR"})
    observed = Observation.from_execution(garbled, ORDER)
    assert observed.status is OrderStatus.NEEDS_REVIEW
    assert observed.reason == "authorized amount unreadable; the order's is 129.90 EUR"


# --- a webhook that reports an unknown result ----------------------------------------------------
@given(observations, st.sampled_from(sorted(UNKNOWN_RESULTS)))
def test_a_reported_unknown_result_outranks_every_poll_but_paid(
    observed: Observation, result: str
) -> None:
    combined = with_reported_unknown(observed, result)
    if observed.status in (OrderStatus.PAID, OrderStatus.NEEDS_REVIEW):
        assert combined == observed
    else:
        assert combined == Observation(OrderStatus.NEEDS_REVIEW, reason=result)


@given(observations)
def test_a_webhook_reporting_nothing_unknown_changes_nothing(observed: Observation) -> None:
    assert with_reported_unknown(observed, None) == observed


def test_a_failed_poll_with_a_provider_timeout_webhook_is_review() -> None:
    failed = Observation.from_execution(execution("authorizeFailed", None), ORDER)
    assert failed.status is OrderStatus.PAYMENT_FAILED
    combined = with_reported_unknown(failed, "ProviderTimeout")
    assert combined == Observation(OrderStatus.NEEDS_REVIEW, reason="ProviderTimeout")
