"""Test amounts: the last two minor-unit digits of a capture, cancel or refund pick its outcome.

An authorize is steered by its test card (``sandbox.cards``); the operations after it are steered
by the amount they move, since the card is the same for all of them. ``10.91 EUR`` is 1091 minor
units, so it ends in ``91``; ``1091 JPY`` ends in ``91`` too. Any other ending succeeds.
"""

from __future__ import annotations

from enum import StrEnum

from shared.money import MINOR_UNITS, Money


class OperationOutcome(StrEnum):
    SUCCEED = "succeed"
    FAIL = "fail"  # {action}Failed, operationResult GenericRejection, webhook success false
    TIME_OUT = "time_out"  # stays {action}Requested for ever: no completion, no webhook
    UNKNOWN = "unknown"  # {action}Failed, operationResult ProviderTimeout: money may have moved


TEST_ENDINGS: dict[int, OperationOutcome] = {
    91: OperationOutcome.FAIL,
    92: OperationOutcome.TIME_OUT,
    93: OperationOutcome.UNKNOWN,
}
FAILED_RESULT = "GenericRejection"
UNKNOWN_RESULT = "ProviderTimeout"


def minor_units(amount: Money) -> int:
    """The amount in the currency's minor units (exact: Money has at most that many digits)."""
    return int(amount.value.scaleb(MINOR_UNITS.get(amount.currency, 2)))


def outcome_of(amount: Money) -> OperationOutcome:
    """What the sandbox's PSP does with an operation moving ``amount``."""
    return TEST_ENDINGS.get(minor_units(amount) % 100, OperationOutcome.SUCCEED)
