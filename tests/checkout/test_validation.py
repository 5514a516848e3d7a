"""Place-order and payments/init validation: one error per invalid field."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingress.checkout.validation import (
    DROP_IN_EXPLANATION,
    METHOD_CODE_ALPHABET,
    SAFE_ALPHABET,
    FieldError,
    InitRequest,
    PlaceOrderRequest,
    parse_init,
    parse_place_order,
)
from shared.money import MAX_INTEGER_DIGITS, MINOR_UNITS, TOO_MANY_INTEGER_DIGITS, Money

LARGEST_EUR = "9" * MAX_INTEGER_DIGITS + ".99"
SMALLEST_TOO_LARGE_EUR = "1" + "0" * MAX_INTEGER_DIGITS + ".00"


def valid_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "paymentInstrumentId": "pi_123",
        "paymentMethodCode": "card",
        "amount": {"value": "129.90", "currency": "EUR"},
        "orderReference": "order-1",
        "customerReference": "customer-1",
    }
    body.update(overrides)
    return body


def errors_of(result: object) -> dict[str, str]:
    assert isinstance(result, list), result
    return {e.field: e.message for e in result if isinstance(e, FieldError)}


def test_a_valid_body_parses_to_a_request() -> None:
    result = parse_place_order(valid_body())
    assert result == PlaceOrderRequest(
        "pi_123", "card", Money(Decimal("129.90"), "EUR"), "order-1", "customer-1"
    )


@pytest.mark.parametrize(
    ("value", "currency", "field", "message"),
    [
        ("129.9", "EUR", "amount.value", "EUR amounts take exactly 2 decimal places"),
        ("129.900", "EUR", "amount.value", "EUR amounts take exactly 2 decimal places"),
        ("1500.00", "JPY", "amount.value", "JPY amounts take exactly 0 decimal places"),
        ("1.500", "KWD", "amount.value", None),
        ("0.00", "EUR", "amount.value", "must be positive"),
        ("-1.00", "EUR", "amount.value", "must be a decimal string such as '12.50'"),
        ("12,50", "EUR", "amount.value", "must be a decimal string such as '12.50'"),
        ("1e3", "EUR", "amount.value", "must be a decimal string such as '12.50'"),
        ("1500\n", "JPY", "amount.value", "must be a decimal string such as '12.50'"),
        (
            "\u0661\u0665\u0660\u0660",
            "JPY",
            "amount.value",
            "must be a decimal string such as '12.50'",
        ),
        (12.5, "EUR", "amount.value", "must be a decimal string such as '12.50'"),
        ("", "EUR", "amount.value", "is required"),
        (LARGEST_EUR, "EUR", "amount.value", None),
        (SMALLEST_TOO_LARGE_EUR, "EUR", "amount.value", TOO_MANY_INTEGER_DIGITS),
        ("1000000000000000.00", "EUR", "amount.value", TOO_MANY_INTEGER_DIGITS),
        ("12.50", "EURO", "amount.currency", "must be an ISO 4217 code such as 'EUR'"),
        ("12.50", "eur", "amount.currency", "must be an ISO 4217 code such as 'EUR'"),
        ("12.50", "ABC", "amount.currency", "must be an ISO 4217 code such as 'EUR'"),
        ("12.50", None, "amount.currency", "is required"),
        ("12.50", 978, "amount.currency", "must be an ISO 4217 code such as 'EUR'"),
        ("12.50", ["EUR"], "amount.currency", "must be an ISO 4217 code such as 'EUR'"),
    ],
)
def test_an_invalid_amount_is_reported_on_its_field(
    value: object, currency: object, field: str, message: str | None
) -> None:
    result = parse_place_order(valid_body(amount={"value": value, "currency": currency}))
    if message is None:  # valid: KWD takes three digits; the largest amount the column holds
        assert isinstance(result, PlaceOrderRequest)
        return
    assert errors_of(result) == {field: message}


def test_a_missing_amount_object_is_reported() -> None:
    body = valid_body()
    del body["amount"]
    assert errors_of(parse_place_order(body)) == {
        "amount": "is required: an object {value, currency}"
    }


@pytest.mark.parametrize(
    "field", ["paymentInstrumentId", "paymentMethodCode", "orderReference", "customerReference"]
)
def test_a_missing_required_field_is_reported(field: str) -> None:
    body = valid_body()
    del body[field]
    assert errors_of(parse_place_order(body)) == {field: "is required"}


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("orderReference", 64),
        ("customerReference", 64),
        ("paymentInstrumentId", 128),
        ("paymentMethodCode", 64),
    ],
)
def test_a_field_over_its_length_limit_is_reported(field: str, limit: int) -> None:
    assert isinstance(parse_place_order(valid_body(**{field: "a" * limit})), PlaceOrderRequest)
    errors = errors_of(parse_place_order(valid_body(**{field: "a" * (limit + 1)})))
    assert errors == {field: f"must be at most {limit} characters"}


@pytest.mark.parametrize(
    "reference", ["order 1", "order/1", "<script>", "-leading", "ordér", "order-1\n"]
)
def test_a_reference_outside_the_safe_alphabet_is_reported(reference: str) -> None:
    errors = errors_of(parse_place_order(valid_body(orderReference=reference)))
    assert errors == {"orderReference": SAFE_ALPHABET}


@pytest.mark.parametrize("instrument", ["pi 1", "pi/1", "pi#1", "-pi_1", ".pi_1", "pí_1", "pi_1\n"])
def test_an_instrument_id_outside_the_safe_alphabet_is_reported(instrument: str) -> None:
    errors = errors_of(parse_place_order(valid_body(paymentInstrumentId=instrument)))
    assert errors == {"paymentInstrumentId": SAFE_ALPHABET}


@pytest.mark.parametrize("instrument", ["pi_1", "0ab", "tok.v2:abc-1"])
def test_an_instrument_id_inside_the_safe_alphabet_is_accepted(instrument: str) -> None:
    result = parse_place_order(valid_body(paymentInstrumentId=instrument))
    assert isinstance(result, PlaceOrderRequest)
    assert result.payment_instrument_id == instrument


@pytest.mark.parametrize(
    "method", ["1card", "_card", "-card", "card.v2", "card:v2", "card pay", "cärd", "card\n"]
)
def test_a_method_code_outside_its_alphabet_is_reported(method: str) -> None:
    errors = errors_of(parse_place_order(valid_body(paymentMethodCode=method)))
    assert errors == {"paymentMethodCode": METHOD_CODE_ALPHABET}


@pytest.mark.parametrize("method", ["card", "applePay", "google_pay", "pay-by-link", "m2"])
def test_a_method_code_inside_its_alphabet_is_accepted(method: str) -> None:
    result = parse_place_order(valid_body(paymentMethodCode=method))
    assert isinstance(result, PlaceOrderRequest)
    assert result.payment_method_code == method


def test_a_non_string_field_is_reported() -> None:
    errors = errors_of(parse_place_order(valid_body(orderReference=42)))
    assert errors == {"orderReference": "must be a string"}


def test_every_invalid_field_is_reported_at_once() -> None:
    body = {"amount": {"value": "1", "currency": "ZZZ"}, "orderReference": "x" * 65}
    assert set(errors_of(parse_place_order(body))) == {
        "paymentInstrumentId",
        "paymentMethodCode",
        "amount.currency",
        "orderReference",
        "customerReference",
    }


def test_a_body_that_is_not_an_object_is_reported() -> None:
    assert errors_of(parse_place_order(["not", "an", "object"])) == {
        "": "the body must be a JSON object"
    }


@given(
    currency=st.sampled_from(sorted(MINOR_UNITS)),
    units=st.integers(min_value=0, max_value=10**9),
    fraction=st.integers(min_value=0, max_value=9999),
)
def test_any_positive_amount_with_the_currency_digits_parses(
    currency: str, units: int, fraction: int
) -> None:
    digits = MINOR_UNITS[currency]
    value = str(units) if digits == 0 else f"{units}.{fraction % 10**digits:0{digits}d}"
    result = parse_place_order(valid_body(amount={"value": value, "currency": currency}))
    if Decimal(value) == 0:
        assert errors_of(result) == {"amount.value": "must be positive"}
    else:
        assert isinstance(result, PlaceOrderRequest)
        assert result.amount == Money(Decimal(value), currency)


@given(body=st.dictionaries(st.text(max_size=20), st.none() | st.text() | st.integers()))
def test_arbitrary_bodies_never_raise(body: dict[str, Any]) -> None:
    result = parse_place_order(body)
    assert isinstance(result, PlaceOrderRequest | list)


@pytest.mark.parametrize("init_type", ["secureFields", "tokenization"])
def test_init_accepts_the_server_to_server_types(init_type: str) -> None:
    result = parse_init({"holderReference": "customer-1", "type": init_type})
    assert result == InitRequest("customer-1", init_type)


def test_init_refuses_drop_in_with_the_reason() -> None:
    result = parse_init({"holderReference": "customer-1", "type": "dropIn"})
    assert errors_of(result) == {"type": DROP_IN_EXPLANATION}


def test_init_reports_a_missing_holder_and_an_unknown_type() -> None:
    assert errors_of(parse_init({"type": "cards"})) == {
        "holderReference": "is required",
        "type": "must be 'secureFields' or 'tokenization'",
    }


@pytest.mark.parametrize(
    ("holder", "message"),
    [
        pytest.param("c" * 65, "must be at most 64 characters", id="too-long"),
        pytest.param("customer 1", SAFE_ALPHABET, id="space"),
        pytest.param("customer/1", SAFE_ALPHABET, id="slash"),
        pytest.param("-customer", SAFE_ALPHABET, id="leading-hyphen"),
        pytest.param("clienté", SAFE_ALPHABET, id="non-ascii"),
        pytest.param("customer-1\n", SAFE_ALPHABET, id="trailing-newline"),
        pytest.param(42, "must be a string", id="not-a-string"),
    ],
)
def test_init_reports_an_invalid_holder_reference(holder: object, message: str) -> None:
    result = parse_init({"holderReference": holder, "type": "secureFields"})
    assert errors_of(result) == {"holderReference": message}


def test_init_accepts_a_holder_reference_at_its_length_limit() -> None:
    result = parse_init({"holderReference": "c" * 64, "type": "secureFields"})
    assert result == InitRequest("c" * 64, "secureFields")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(["customer-1", "secureFields"], id="array"),
        pytest.param("customer-1", id="string"),
        pytest.param(42, id="number"),
        pytest.param(None, id="null"),
    ],
)
def test_init_reports_a_body_that_is_not_an_object(body: object) -> None:
    assert errors_of(parse_init(body)) == {"": "the body must be a JSON object"}
