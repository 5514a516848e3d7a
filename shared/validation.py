"""Pure field validation shared by every door that takes an order's terms (HTTP and AMQP).

A JSON body becomes a frozen value or a list of per-field errors, every problem reported at once.
"""

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
SAFE_ALPHABET = "must start with a letter or digit and contain only letters, digits and . _ : -"
REFERENCE_MAX = 64
_DECIMAL_SHAPE = re.compile(r"^([0-9]+)(\.[0-9]{1,8})?\Z")  # ASCII digits only


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field, named by its JSON path."""

    field: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(frozen=True, slots=True)
class OrderTerms:
    """What a commerce backend decides about an order: the only source of amount and customer."""

    reference: str
    customer_reference: str
    amount: Money


def text_field(
    body: Mapping[str, Any],
    name: str,
    pattern: re.Pattern[str],
    alphabet: str,
    max_length: int,
    errors: list[FieldError],
    *,
    required: bool = True,
) -> str | None:
    """A string field matching ``pattern`` (``alphabet`` says how in words); None when absent."""
    value = body.get(name)
    if value is None or value == "":
        if required:
            errors.append(FieldError(name, "is required"))
        return None
    if not isinstance(value, str):
        errors.append(FieldError(name, "must be a string"))
        return None
    if len(value) > max_length:
        errors.append(FieldError(name, f"must be at most {max_length} characters"))
    elif not pattern.match(value):
        errors.append(FieldError(name, alphabet))
    return value


def reference_field(
    body: Mapping[str, Any], name: str, errors: list[FieldError], *, required: bool = True
) -> str | None:
    return text_field(
        body, name, REFERENCE, SAFE_ALPHABET, REFERENCE_MAX, errors, required=required
    )


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


def amount_field(
    body: Mapping[str, Any], errors: list[FieldError], *, required: bool = True
) -> Money | None:
    """``amount {value, currency}`` as exact Money in the currency's minor units."""
    raw = body.get("amount")
    if raw is None and not required:
        return None
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


def parse_order_terms(body: object) -> OrderTerms | list[FieldError]:
    """Validate a create-order body (merchant API or command): reference, amount, customer."""
    if not isinstance(body, Mapping):
        return [FieldError("", "the body must be a JSON object")]
    errors: list[FieldError] = []
    reference = reference_field(body, "orderReference", errors)
    amount = amount_field(body, errors)
    customer = reference_field(body, "customerReference", errors)
    if errors or reference is None or customer is None or amount is None:
        return errors
    return OrderTerms(reference, customer, amount)
