"""Money parsing: exact decimals with the currency's minor digits, never floats."""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.db.models import AMOUNT
from shared.errors import InvalidPayload
from shared.money import (
    AMOUNT_PRECISION,
    AMOUNT_SCALE,
    MAX_INTEGER_DIGITS,
    MINOR_UNITS,
    TOO_MANY_INTEGER_DIGITS,
    Money,
)


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
        ("1500\n", "JPY", "decimal string"),
        ("\u0661\u0665\u0660\u0660", "JPY", "decimal string"),
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


def test_the_integer_digit_bound_is_the_amount_columns() -> None:
    assert (AMOUNT.precision, AMOUNT.scale) == (AMOUNT_PRECISION, AMOUNT_SCALE)
    assert MAX_INTEGER_DIGITS == 14
    assert max(MINOR_UNITS.values()) <= AMOUNT_SCALE


@pytest.mark.parametrize(
    ("value", "currency"),
    [
        ("9" * MAX_INTEGER_DIGITS, "JPY"),
        ("9" * MAX_INTEGER_DIGITS + ".99", "EUR"),
        ("9" * MAX_INTEGER_DIGITS + ".9999", "CLF"),
    ],
)
def test_the_largest_amount_with_the_most_integer_digits_is_accepted(
    value: str, currency: str
) -> None:
    assert Money.parse(value, currency) == Money(Decimal(value), currency)


@pytest.mark.parametrize(
    ("value", "currency"),
    [
        ("1" + "0" * MAX_INTEGER_DIGITS, "JPY"),
        ("1" + "0" * MAX_INTEGER_DIGITS + ".00", "EUR"),
        ("1" + "0" * MAX_INTEGER_DIGITS + ".0000", "CLF"),
        ("1000000000000000.00", "EUR"),
    ],
)
def test_the_smallest_amount_with_one_integer_digit_too_many_is_refused(
    value: str, currency: str
) -> None:
    with pytest.raises(InvalidPayload) as refused:
        Money.parse(value, currency)
    assert str(refused.value) == f"amount {TOO_MANY_INTEGER_DIGITS}"


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
