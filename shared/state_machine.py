"""The order state machine: a pure function from (current state, observation) to a transition.

    created -> authorizing -> action_required -> paid | payment_failed | needs_review
    (authorizing -> paid directly on the frictionless path)

States are ranked; an order only ever moves to a higher rank, and the three terminal states never
change. So whichever of the webhook, the poll, the return page or the sweeper sees a state first
moves the order, and later or older observations change nothing. The one way back: a declined
order may start a new payment attempt (``new_attempt``: payment_failed -> created, with a new
execution) until it expires, and observations of an earlier attempt never move it again
(``decide_attempt``).

Every set of statuses the service acts on is defined here and nowhere else; adding a status
means this module, a migration that widens the database's check constraints, and their tests
(CONTRIBUTING.md, "Adding an order status").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.money import Money
from shared.payrails.models import Execution, ExecutionOutcome
from shared.payrails.payment_record import PaymentRecord


class OrderStatus(StrEnum):
    CREATED = "created"
    AUTHORIZING = "authorizing"
    ACTION_REQUIRED = "action_required"
    PAID = "paid"
    PAYMENT_FAILED = "payment_failed"
    NEEDS_REVIEW = "needs_review"


class Cause(StrEnum):
    """What made us look: recorded on every transition."""

    PLACE_ORDER = "place_order"
    PRE_AUTHORIZE = "pre_authorize"
    AUTHORIZE = "authorize"
    WEBHOOK = "webhook"
    POLL = "poll"
    RETURN = "return"
    SWEEP = "sweep"
    OPERATOR = "operator"


RANK: dict[OrderStatus, int] = {
    OrderStatus.CREATED: 0,
    OrderStatus.AUTHORIZING: 1,
    OrderStatus.ACTION_REQUIRED: 2,
    OrderStatus.PAID: 3,
    OrderStatus.PAYMENT_FAILED: 3,
    OrderStatus.NEEDS_REVIEW: 3,
}
# States that never change again, except by a person's review verdict (resolve_review).
TERMINAL = frozenset({OrderStatus.PAID, OrderStatus.PAYMENT_FAILED, OrderStatus.NEEDS_REVIEW})
# States the sweeper repairs once an order has waited in them too long.
STUCK = frozenset({OrderStatus.AUTHORIZING, OrderStatus.ACTION_REQUIRED})
# States in which the shopper's outcome is not known yet (the checkout keeps waiting).
UNRESOLVED = frozenset({OrderStatus.CREATED, OrderStatus.AUTHORIZING})
# States the authorize consumer still authorizes (and a dead letter may still be replayed in).
AUTHORIZABLE = frozenset({OrderStatus.CREATED, OrderStatus.AUTHORIZING})
# States in which a shopper may start another payment attempt with another card: the last
# attempt was declined (a payment that failed is not final for the order until it expires).
RETRYABLE = frozenset({OrderStatus.PAYMENT_FAILED})
# States in which an order is given a new checkout session: nobody has paid it yet.
PAYABLE = frozenset({OrderStatus.CREATED}) | RETRYABLE

# The message each state announces to commerce backends (ARCHITECTURE section 9); a state
# without a key is not announced.
ROUTING_KEY: dict[OrderStatus, str] = {
    OrderStatus.ACTION_REQUIRED: "order.action_required",
    OrderStatus.PAID: "order.paid",
    OrderStatus.PAYMENT_FAILED: "order.payment_failed",
    OrderStatus.NEEDS_REVIEW: "order.needs_review",
}

_FROM_OUTCOME: dict[ExecutionOutcome, OrderStatus] = {
    ExecutionOutcome.PENDING: OrderStatus.AUTHORIZING,
    ExecutionOutcome.ACTION_REQUIRED: OrderStatus.ACTION_REQUIRED,
    ExecutionOutcome.SUCCEEDED: OrderStatus.PAID,
    ExecutionOutcome.FAILED: OrderStatus.PAYMENT_FAILED,
    ExecutionOutcome.UNKNOWN: OrderStatus.NEEDS_REVIEW,
}


@dataclass(frozen=True, slots=True)
class Observation:
    """A state some source says the order has reached, with what goes with it."""

    status: OrderStatus
    threeds_url: str | None = None
    reason: str | None = None
    payment: PaymentRecord | None = None  # the payment behind it, for the books

    @classmethod
    def from_execution(cls, execution: Execution, expected: Money | None = None) -> Observation:
        """What the execution says; ``expected`` is the order's amount, when the caller has it.

        A succeeded execution whose amount (the sum of its payments) differs from ``expected``
        in value or currency goes to ``needs_review``: money moved, but not the order's amount.
        An execution without an amount is not compared (Payrails sets it only once an action
        carried one); one whose amount is there but unreadable cannot be shown to match, so it
        goes to review too.
        """
        status = _FROM_OUTCOME[execution.outcome]
        if status is OrderStatus.PAID and expected is not None:
            mismatch = amount_mismatch(execution, expected)
            if mismatch is not None:
                return cls(OrderStatus.NEEDS_REVIEW, reason=mismatch, payment=execution.payment)
        reason = execution.operation_result if status in TERMINAL - {OrderStatus.PAID} else None
        return cls(status, execution.threeds_url, reason, execution.payment)


def with_reported_unknown(observed: Observation, result: str | None) -> Observation:
    """``observed`` (from the re-polled execution), given what the triggering webhook reported.

    An outcome counts as unknown when either the polled execution or the webhook that
    triggered the poll says so: when the webhook reports an unknown-family ``result``
    (``Unknown``, ``Timeout``, ``ProviderTimeout``...), a poll that reads failed, pending or
    awaiting the shopper becomes ``needs_review`` with that result as the reason. The one poll
    that outranks the webhook is ``paid``: Payrails now confirms the authorization at the
    order's amount (a different amount is already ``needs_review``). That is the rule the
    execution itself follows for its own unknown results, and it keeps the outcome the same
    whether the webhook or the checkout's poll saw the success first.
    """
    if result is None or observed.status in (OrderStatus.PAID, OrderStatus.NEEDS_REVIEW):
        return observed
    return Observation(OrderStatus.NEEDS_REVIEW, reason=result, payment=observed.payment)


def _show(money: Money) -> str:
    return f"{money.format_value()} {money.currency}"


def amount_mismatch(execution: Execution, expected: Money) -> str | None:
    """Why the execution's amount is not ``expected``; None when it matches or is absent."""
    authorized = execution.amount
    if authorized is None:
        if execution.raw.get("amount") is None:
            return None
        return f"authorized amount unreadable; the order's is {_show(expected)}"
    if authorized.currency == expected.currency and authorized.value == expected.value:
        return None
    return f"authorized amount {_show(authorized)} differs from the order's {_show(expected)}"


@dataclass(frozen=True, slots=True)
class Transition:
    from_status: OrderStatus
    to_status: OrderStatus
    threeds_url: str | None = None
    reason: str | None = None

    @property
    def routing_key(self) -> str | None:
        return ROUTING_KEY.get(self.to_status)


def decide(current: OrderStatus, observed: Observation) -> Transition | None:
    """The transition ``observed`` causes from ``current``, or None if it changes nothing."""
    if current in TERMINAL or RANK[observed.status] <= RANK[current]:
        return None
    if observed.status is OrderStatus.ACTION_REQUIRED and not observed.threeds_url:
        return None  # a challenge without a URL gives the shopper nothing to do
    return Transition(current, observed.status, observed.threeds_url, observed.reason)


def decide_attempt(
    current: OrderStatus, attempt: int, observed_attempt: int, observed: Observation
) -> Transition | None:
    """``decide`` for an observation of payment attempt ``observed_attempt``.

    Only the order's current attempt moves it: whatever an earlier attempt's execution reports
    later (a late webhook, a slow poll) changes nothing, so a declined attempt can never un-pay
    an order another attempt paid.
    """
    if observed_attempt != attempt:
        return None
    return decide(current, observed)


def new_attempt(current: OrderStatus) -> Transition | None:
    """The shopper pays again with another card: the one way back from ``payment_failed``.

    Only a declined order starts a new attempt (back to ``created``, with a new execution); an
    attempt in flight, a paid order or one in review never does.
    """
    if current not in RETRYABLE:
        return None
    return Transition(current, OrderStatus.CREATED)


# The verdicts a person may give an order in needs_review.
REVIEW_VERDICTS = frozenset({OrderStatus.PAID, OrderStatus.PAYMENT_FAILED})


def resolve_review(current: OrderStatus, verdict: OrderStatus, note: str) -> Transition | None:
    """A person's verdict on an order in needs_review: the one way out of a terminal state."""
    if current is not OrderStatus.NEEDS_REVIEW or verdict not in REVIEW_VERDICTS:
        return None
    return Transition(current, verdict, None, note)
