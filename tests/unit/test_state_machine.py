"""The order state machine: monotonic, terminal states never change, order-independent."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.state_machine import (
    RANK,
    REVIEW_VERDICTS,
    TERMINAL,
    Observation,
    OrderStatus,
    decide,
    resolve_review,
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
