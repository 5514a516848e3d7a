"""Two payment attempts of one order: paid at most once, whatever order the reports arrive in."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from shared.payment_attempts import attempt_operation
from shared.state_machine import (
    RETRYABLE,
    Observation,
    OrderStatus,
    decide_attempt,
    new_attempt,
)

URL = "https://sandbox.example/3ds/x"
RETRY = "retry"  # the shopper places the order again with another card

Report = tuple[int, Observation]  # (attempt, what its execution shows)
Step = Report | str

reports = st.tuples(
    st.sampled_from([1, 2]),
    st.builds(
        Observation,
        status=st.sampled_from(list(OrderStatus)),
        threeds_url=st.sampled_from([None, URL]),
    ),
)
steps = st.lists(st.one_of(reports, st.just(RETRY)), max_size=24)


@dataclass
class OrderModel:
    """The order as the state machine leaves it: its status, its attempt and what it entered."""

    status: OrderStatus = OrderStatus.CREATED
    attempt: int = 1
    entered: list[tuple[int, OrderStatus]] = field(default_factory=list)

    def apply(self, step: Step) -> bool:
        """Apply one step; True when the order changed."""
        if isinstance(step, str):
            if self.attempt >= 2 or new_attempt(self.status) is None:
                return False  # two attempts in this model
            self.status, self.attempt = OrderStatus.CREATED, self.attempt + 1
            return True
        attempt, observed = step
        transition = decide_attempt(self.status, self.attempt, attempt, observed)
        if transition is None:
            return False
        assert transition.from_status is self.status
        self.status = transition.to_status
        self.entered.append((attempt, self.status))
        return True


def run(seen: list[Step]) -> OrderModel:
    order = OrderModel()
    for step in seen:
        order.apply(step)
    return order


@given(steps)
def test_an_order_is_paid_at_most_once_across_two_attempts(seen: list[Step]) -> None:
    order = OrderModel()
    paid = False
    for step in seen:
        changed = order.apply(step)
        if paid:
            assert not changed  # nothing moves a paid order: no late report, no new attempt
        paid = paid or order.status is OrderStatus.PAID
    assert [s for _, s in order.entered].count(OrderStatus.PAID) <= 1


@given(steps)
def test_only_the_current_attempt_moves_the_order(seen: list[Step]) -> None:
    order = OrderModel()
    for step in seen:
        attempt = order.attempt
        if order.apply(step) and not isinstance(step, str):
            assert step[0] == attempt


@given(steps)
def test_a_new_attempt_starts_only_after_a_decline(seen: list[Step]) -> None:
    order = OrderModel()
    for step in seen:
        before = order.status
        if order.apply(step) and isinstance(step, str):
            assert before in RETRYABLE
            assert order.status is OrderStatus.CREATED


FIRST = [Observation(OrderStatus.AUTHORIZING), Observation(OrderStatus.PAYMENT_FAILED)]
SECOND = [
    Observation(OrderStatus.AUTHORIZING),
    Observation(OrderStatus.ACTION_REQUIRED, URL),
    Observation(OrderStatus.PAID),
]
late_first = st.lists(
    st.builds(
        Observation,
        status=st.sampled_from(list(OrderStatus)),
        threeds_url=st.sampled_from([None, URL]),
    ),
    max_size=6,
)


@given(st.permutations(FIRST), st.permutations(SECOND), late_first, st.randoms())
def test_a_decline_then_another_card_ends_paid_in_any_interleaving_of_late_reports(
    first: list[Observation],
    second: list[Observation],
    late: list[Observation],
    rnd: random.Random,
) -> None:
    """Attempt 1 is declined, the shopper retries, and attempt 1's reports keep arriving
    (duplicated, reordered, even claiming success) among attempt 2's: the order ends paid by
    attempt 2, once."""
    declined = run([(1, o) for o in first])
    assert declined.status is OrderStatus.PAYMENT_FAILED
    tail: list[Step] = [(2, o) for o in second]
    for observed in late:
        tail.insert(rnd.randint(0, len(tail)), (1, observed))
    order = OrderModel(declined.status, declined.attempt, list(declined.entered))
    assert order.apply(RETRY)
    for step in tail:
        order.apply(step)
    assert (order.status, order.attempt) == (OrderStatus.PAID, 2)
    assert order.entered.count((2, OrderStatus.PAID)) == 1
    assert (1, OrderStatus.PAID) not in order.entered


def test_each_attempt_after_the_first_has_its_own_idempotency_keys() -> None:
    assert attempt_operation("authorize", 1) == "authorize"
    assert attempt_operation("authorize", 2) == "authorize:2"
    assert attempt_operation("create_execution", 3) == "create_execution:3"
