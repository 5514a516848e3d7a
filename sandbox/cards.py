"""Test cards: the PAN picks the sandbox's behaviour; card data never leaves this process."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from sandbox.errors import invalid
from shared.luhn import luhn_ok


class Behaviour(StrEnum):
    APPROVE = "approve"
    CHALLENGE = "challenge"
    DECLINE = "decline"
    CASCADE = "cascade"
    UNKNOWN = "unknown"


TEST_CARDS: dict[str, Behaviour] = {
    "4242424242424242": Behaviour.APPROVE,
    "4000000000003220": Behaviour.CHALLENGE,
    "4000000000009995": Behaviour.DECLINE,
    "4000002760003184": Behaviour.CASCADE,
    "4000000000000119": Behaviour.UNKNOWN,
}


@dataclass(frozen=True, slots=True)
class Instrument:
    """A tokenized card: its behaviour and display digits, never the PAN or CVV."""

    id: str
    behaviour: Behaviour
    bin: str
    last4: str
    holder_reference: str

    @property
    def network(self) -> str:
        return network_of(self.bin)


# Leading digits of a card number and the network that issues them (the common ranges).
_NETWORKS = (
    (("34", "37"), "amex"),
    (("51", "52", "53", "54", "55", "22", "23", "24", "25", "26", "27"), "mastercard"),
    (("4",), "visa"),
    (("6011", "65"), "discover"),
)


def network_of(bin_digits: str) -> str:
    """The card network a BIN belongs to; ``unknown`` outside the common ranges."""
    for prefixes, network in _NETWORKS:
        if bin_digits.startswith(prefixes):
            return network
    return "unknown"


def check_card(number: object, month: object, year: object, cvv: object, today: date) -> str:
    """The PAN's digits after validating every field; raise ApiError 400 otherwise."""
    digits = re.sub(r"[ -]", "", number) if isinstance(number, str) else ""
    if not digits.isdigit() or not 12 <= len(digits) <= 19 or not luhn_ok(digits):
        raise invalid("cardNumber is not a valid card number")
    expiry_month = _int(month)
    expiry_year = _int(year)
    if expiry_month is None or not 1 <= expiry_month <= 12 or expiry_year is None:
        raise invalid("expiryMonth/expiryYear are not a valid expiry")
    if expiry_year < 100:
        expiry_year += 2000
    if (expiry_year, expiry_month) < (today.year, today.month):
        raise invalid("the card has expired")
    if not isinstance(cvv, str) or not re.fullmatch(r"\d{3,4}", cvv):
        raise invalid("securityCode must be 3 or 4 digits")
    return digits


def behaviour_of(digits: str) -> Behaviour:
    """The test card's behaviour; any other valid card approves, like Payrails' test PSP."""
    return TEST_CARDS.get(digits, Behaviour.APPROVE)


def _int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
