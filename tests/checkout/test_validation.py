"""Place-order, payments/init and create-order validation: one error per invalid field.

Place-order and init take only the instrument from the shopper; the amount, reference and customer
they may still carry are optional claims, compared with the session's order elsewhere. The
create-order terms (merchant API, command) are the only source of amount and customer.
"""

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
from shared.validation import REFERENCE_MAX, OrderTerms, parse_order_terms

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


@pytest.mark.parametrize(
    "absent", [pytest.param(False, id="omitted"), pytest.param(True, id="null")]
)
def test_the_seed_s_claims_may_be_left_out(absent: bool) -> None:
    """The session's order sets amount, reference and customer: the body needs none of them."""
    body: dict[str, Any] = {"paymentInstrumentId": "pi_123", "paymentMethodCode": "card"}
    if absent:
        body.update(amount=None, orderReference=None, customerReference=None)
    assert parse_place_order(body) == PlaceOrderRequest("pi_123", "card", None, None, None)


@pytest.mark.parametrize("amount", ["129.90", 129.9, ["129.90", "EUR"]])
def test_an_amount_that_is_not_an_object_is_reported(amount: object) -> None:
    assert errors_of(parse_place_order(valid_body(amount=amount))) == {
        "amount": "is required: an object {value, currency}"
    }


@pytest.mark.parametrize("field", ["paymentInstrumentId", "paymentMethodCode"])
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
    body = {
        "amount": {"value": "1", "currency": "ZZZ"},
        "orderReference": "x" * 65,
        "customerReference": "customer 1",
    }
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
    assert result == InitRequest(init_type, "customer-1")


@pytest.mark.parametrize("body", [pytest.param(None, id="empty-body"), pytest.param({}, id="{}")])
def test_init_without_a_body_is_a_secure_fields_init_for_the_order_s_customer(
    body: object,
) -> None:
    assert parse_init(body) == InitRequest("secureFields", None)


def test_init_refuses_drop_in_with_the_reason() -> None:
    result = parse_init({"holderReference": "customer-1", "type": "dropIn"})
    assert errors_of(result) == {"type": DROP_IN_EXPLANATION}


def test_init_needs_no_holder_reference() -> None:
    assert parse_init({"type": "tokenization"}) == InitRequest("tokenization", None)


def test_init_reports_an_unknown_type() -> None:
    assert errors_of(parse_init({"type": "cards"})) == {
        "type": "must be 'secureFields' or 'tokenization'"
    }


def test_init_reports_an_invalid_holder_and_type_at_once() -> None:
    assert errors_of(parse_init({"holderReference": "c/1", "type": "cards"})) == {
        "holderReference": SAFE_ALPHABET,
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
    assert result == InitRequest("secureFields", "c" * 64)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(["customer-1", "secureFields"], id="array"),
        pytest.param("customer-1", id="string"),
        pytest.param(42, id="number"),
    ],
)
def test_init_reports_a_body_that_is_not_an_object(body: object) -> None:
    assert errors_of(parse_init(body)) == {"": "the body must be a JSON object"}


# --- create-order terms (merchant API and command) -------------------------------------------

REFERENCE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
references = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(REFERENCE_CHARS),
    st.text(alphabet=REFERENCE_CHARS + "._:-", max_size=REFERENCE_MAX - 1),
)


@st.composite
def amounts(draw: st.DrawFn) -> tuple[str, str]:
    """A positive value as the currency writes it, up to the largest the order table holds."""
    currency = draw(st.sampled_from(sorted(MINOR_UNITS)))
    digits = MINOR_UNITS[currency]
    minor = draw(st.integers(min_value=1, max_value=10 ** (MAX_INTEGER_DIGITS + digits) - 1))
    value = Decimal(minor).scaleb(-digits)
    return f"{value:.{digits}f}", currency


def terms_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "orderReference": "order-1",
        "amount": {"value": "129.90", "currency": "EUR"},
        "customerReference": "customer-1",
    }
    body.update(overrides)
    return body


def test_valid_terms_parse_to_order_terms() -> None:
    assert parse_order_terms(terms_body()) == OrderTerms(
        "order-1", "customer-1", Money(Decimal("129.90"), "EUR")
    )


@given(reference=references, customer=references, amount=amounts())
def test_any_valid_terms_round_trip(reference: str, customer: str, amount: tuple[str, str]) -> None:
    value, currency = amount
    body = terms_body(
        orderReference=reference,
        customerReference=customer,
        amount={"value": value, "currency": currency},
    )
    result = parse_order_terms(body)
    assert isinstance(result, OrderTerms), result
    assert result.reference == reference
    assert result.customer_reference == customer
    assert result.amount.to_json() == body["amount"]


@pytest.mark.parametrize("field", ["orderReference", "customerReference"])
def test_terms_without_a_reference_are_reported(field: str) -> None:
    body = terms_body()
    del body[field]
    assert errors_of(parse_order_terms(body)) == {field: "is required"}


@pytest.mark.parametrize("amount", [None, "129.90", 129.9])
def test_terms_need_an_amount_object(amount: object) -> None:
    assert errors_of(parse_order_terms(terms_body(amount=amount))) == {
        "amount": "is required: an object {value, currency}"
    }


@pytest.mark.parametrize(
    ("amount", "field", "message"),
    [
        ({"value": "0.00", "currency": "EUR"}, "amount.value", "must be positive"),
        (
            {"value": "129.9", "currency": "EUR"},
            "amount.value",
            "EUR amounts take exactly 2 decimal places",
        ),
        (
            {"value": SMALLEST_TOO_LARGE_EUR, "currency": "EUR"},
            "amount.value",
            TOO_MANY_INTEGER_DIGITS,
        ),
        ({"value": "129.90"}, "amount.currency", "is required"),
        (
            {"value": "129.90", "currency": "eur"},
            "amount.currency",
            "must be an ISO 4217 code such as 'EUR'",
        ),
    ],
)
def test_an_invalid_terms_amount_is_reported_on_its_field(
    amount: dict[str, str], field: str, message: str
) -> None:
    assert errors_of(parse_order_terms(terms_body(amount=amount))) == {field: message}


@pytest.mark.parametrize("field", ["orderReference", "customerReference"])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a" * (REFERENCE_MAX + 1), f"must be at most {REFERENCE_MAX} characters"),
        ("order/1", SAFE_ALPHABET),
        ("order-1\n", SAFE_ALPHABET),
        (42, "must be a string"),
    ],
)
def test_an_invalid_terms_reference_is_reported(field: str, value: object, message: str) -> None:
    assert errors_of(parse_order_terms(terms_body(**{field: value}))) == {field: message}


def test_every_invalid_terms_field_is_reported_at_once() -> None:
    body = {"orderReference": "o" * 65, "amount": {"value": "-1", "currency": "ZZZ"}}
    assert set(errors_of(parse_order_terms(body))) == {
        "orderReference",
        "amount.value",
        "amount.currency",
        "customerReference",
    }


@pytest.mark.parametrize("body", [None, [], "order-1", 42])
def test_terms_that_are_not_an_object_are_reported(body: object) -> None:
    assert errors_of(parse_order_terms(body)) == {"": "the body must be a JSON object"}


@given(
    body=st.dictionaries(
        st.sampled_from(["orderReference", "customerReference", "amount", "other"]),
        st.none()
        | st.text()
        | st.integers()
        | st.dictionaries(st.sampled_from(["value", "currency"]), st.none() | st.text()),
    )
)
def test_arbitrary_terms_never_raise_and_either_parse_or_name_a_field(
    body: dict[str, Any],
) -> None:
    result = parse_order_terms(body)
    assert isinstance(result, OrderTerms) or (isinstance(result, list) and result)
