"""Pure request validation: a JSON body becomes a frozen request, or a list of per-field errors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from shared.errors import InvalidPayload
from shared.money import MAX_INTEGER_DIGITS, TOO_MANY_INTEGER_DIGITS, Money, is_currency

# References travel to Payrails, logs and URLs: a short, safe alphabet. Patterns end in \Z,
# not $, which would also match before a trailing newline.
REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*\Z")
INSTRUMENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*\Z")
METHOD_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*\Z")
# What each pattern allows, in words, for the 422 message.
SAFE_ALPHABET = "must start with a letter or digit and contain only letters, digits and . _ : -"
METHOD_CODE_ALPHABET = "must start with a letter and contain only letters, digits, _ and -"
_DECIMAL_SHAPE = re.compile(r"^([0-9]+)(\.[0-9]{1,8})?\Z")  # ASCII digits only

REFERENCE_MAX = 64
INSTRUMENT_ID_MAX = 128
METHOD_CODE_MAX = 64

INIT_TYPES = ("secureFields", "tokenization")
DROP_IN_EXPLANATION = (
    "type 'dropIn' lets the SDK run authorize itself and bypass this backend; "
    "use 'secureFields' (Secure Fields, Card Form) or 'tokenization' (Card List, wallets)"
)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field, named by its JSON path."""

    field: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(frozen=True, slots=True)
class InitRequest:
    holder_reference: str
    init_type: str


@dataclass(frozen=True, slots=True)
class PlaceOrderRequest:
    payment_instrument_id: str
    payment_method_code: str
    amount: Money
    order_reference: str
    customer_reference: str


def _text(
    body: Mapping[str, Any],
    name: str,
    pattern: re.Pattern[str],
    alphabet: str,
    max_length: int,
    errors: list[FieldError],
) -> str:
    """A required string field matching ``pattern`` (``alphabet`` says how in words)."""
    value = body.get(name)
    if value is None or value == "":
        errors.append(FieldError(name, "is required"))
        return ""
    if not isinstance(value, str):
        errors.append(FieldError(name, "must be a string"))
        return ""
    if len(value) > max_length:
        errors.append(FieldError(name, f"must be at most {max_length} characters"))
    elif not pattern.match(value):
        errors.append(FieldError(name, alphabet))
    return value


def _value_shape_error(value: object) -> str | None:
    """What is wrong with an amount value regardless of its currency, if anything."""
    if value is None or value == "":
        return "is required"
    if not isinstance(value, str):
        return "must be a decimal string such as '12.50'"
    shape = _DECIMAL_SHAPE.match(value)
    if shape is None:
        return "must be a decimal string such as '12.50'"
    if len(shape.group(1)) > MAX_INTEGER_DIGITS:
        return TOO_MANY_INTEGER_DIGITS
    if Decimal(value) <= 0:
        return "must be positive"
    return None


def _amount(body: Mapping[str, Any], errors: list[FieldError]) -> Money | None:
    raw = body.get("amount")
    if not isinstance(raw, Mapping):
        errors.append(FieldError("amount", "is required: an object {value, currency}"))
        return None
    value, currency = raw.get("value"), raw.get("currency")
    currency_ok = isinstance(currency, str) and is_currency(currency)
    if currency is None or currency == "":
        errors.append(FieldError("amount.currency", "is required"))
    elif not currency_ok:
        errors.append(FieldError("amount.currency", "must be an ISO 4217 code such as 'EUR'"))
    shape_error = _value_shape_error(value)
    if shape_error is not None:
        errors.append(FieldError("amount.value", shape_error))
        return None
    if not currency_ok:
        return None
    try:
        return Money.parse(value, currency)
    except InvalidPayload as exc:
        errors.append(FieldError("amount.value", str(exc)))
        return None


def parse_place_order(body: object) -> PlaceOrderRequest | list[FieldError]:
    """Validate a place-order body; every problem is reported, not just the first."""
    if not isinstance(body, Mapping):
        return [FieldError("", "the body must be a JSON object")]
    errors: list[FieldError] = []
    instrument = _text(
        body, "paymentInstrumentId", INSTRUMENT_ID, SAFE_ALPHABET, INSTRUMENT_ID_MAX, errors
    )
    method = _text(
        body, "paymentMethodCode", METHOD_CODE, METHOD_CODE_ALPHABET, METHOD_CODE_MAX, errors
    )
    amount = _amount(body, errors)
    order_reference = _text(body, "orderReference", REFERENCE, SAFE_ALPHABET, REFERENCE_MAX, errors)
    customer_reference = _text(
        body, "customerReference", REFERENCE, SAFE_ALPHABET, REFERENCE_MAX, errors
    )
    if errors or amount is None:
        return errors
    return PlaceOrderRequest(instrument, method, amount, order_reference, customer_reference)


def parse_init(body: object) -> InitRequest | list[FieldError]:
    """Validate a payments/init body; ``dropIn`` is refused with the reason."""
    if not isinstance(body, Mapping):
        return [FieldError("", "the body must be a JSON object")]
    errors: list[FieldError] = []
    holder = _text(body, "holderReference", REFERENCE, SAFE_ALPHABET, REFERENCE_MAX, errors)
    init_type = body.get("type")
    if init_type == "dropIn":
        errors.append(FieldError("type", DROP_IN_EXPLANATION))
    elif init_type not in INIT_TYPES:
        errors.append(FieldError("type", "must be 'secureFields' or 'tokenization'"))
    if errors:
        return errors
    return InitRequest(holder, str(init_type))
