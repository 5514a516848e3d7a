"""Money parsing: exact decimals with the currency's minor digits, never floats."""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import InvalidPayload
from shared.money import MINOR_UNITS, Money


def test_a_valid_amount_parses_exactly() -> None:
    assert Money.parse("129.90", "EUR") == Money(Decimal("129.90"), "EUR")


@pytest.mark.parametrize(
    ("value", "currency", "reason"),
    [
        ("12.5", "EUR", "exactly 2"),
        ("12.50", "JPY", "exactly 0"),
        ("0.00", "EUR", "positive"),
        ("-1.00", "EUR", "decimal string"),
        ("1e3", "EUR", "decimal string"),
        (12.5, "EUR", "decimal string"),
        ("12.50", "EURO", "ISO 4217"),
        ("12.50", "eur", "ISO 4217"),
    ],
)
def test_invalid_amounts_are_rejected_with_a_reason(
    value: object, currency: str, reason: str
) -> None:
    with pytest.raises(InvalidPayload, match=reason):
        Money.parse(value, currency)


@given(
    st.sampled_from(sorted(MINOR_UNITS)),
    st.integers(min_value=1, max_value=10**12),
)
def test_formatting_round_trips_through_parse(currency: str, minor: int) -> None:
    digits = MINOR_UNITS[currency]
    value = Decimal(minor).scaleb(-digits)
    money = Money(value, currency)
    assert Money.parse(money.format_value(), currency) == money


@given(st.text(max_size=30), st.text(max_size=5))
def test_parse_never_raises_anything_but_invalid_payload(value: str, currency: str) -> None:
    with contextlib.suppress(InvalidPayload):
        Money.parse(value, currency)
