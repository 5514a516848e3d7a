"""Shopper request validation: a JSON body becomes a frozen request, or per-field errors.

Nothing here decides money: the amount, currency and customer come from the order the checkout
session is bound to. An ``amount`` or ``orderReference`` the storefront still sends (the seed's
body) is parsed only so that a value differing from the order's can be refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from shared.money import Money
from shared.validation import (
    REFERENCE,
    REFERENCE_MAX,
    SAFE_ALPHABET,
    FieldError,
    amount_field,
    reference_field,
    text_field,
)

__all__ = [
    "DROP_IN_EXPLANATION",
    "INSTRUMENT_ID",
    "METHOD_CODE",
    "REFERENCE",
    "REFERENCE_MAX",
    "SAFE_ALPHABET",
    "FieldError",
    "InitRequest",
    "PlaceOrderRequest",
    "parse_init",
    "parse_place_order",
]

INSTRUMENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*\Z")
METHOD_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*\Z")
METHOD_CODE_ALPHABET = "must start with a letter and contain only letters, digits, _ and -"
INSTRUMENT_ID_MAX = 128
METHOD_CODE_MAX = 64

INIT_TYPES = ("secureFields", "tokenization")
DEFAULT_INIT_TYPE = "secureFields"
DROP_IN_EXPLANATION = (
    "type 'dropIn' lets the SDK run authorize itself and bypass this backend; "
    "use 'secureFields' (Secure Fields, Card Form) or 'tokenization' (Card List, wallets)"
)


@dataclass(frozen=True, slots=True)
class InitRequest:
    init_type: str
    holder_reference: str | None = None  # only compared with the order's customer


@dataclass(frozen=True, slots=True)
class PlaceOrderRequest:
    payment_instrument_id: str
    payment_method_code: str
    # What the storefront claims; each is only compared with the session's order, never used.
    amount: Money | None = None
    order_reference: str | None = None
    customer_reference: str | None = None


def parse_place_order(body: object) -> PlaceOrderRequest | list[FieldError]:
    """Validate a place-order body; every problem is reported, not just the first."""
    if not isinstance(body, Mapping):
        return [FieldError("", "the body must be a JSON object")]
    errors: list[FieldError] = []
    instrument = text_field(
        body, "paymentInstrumentId", INSTRUMENT_ID, SAFE_ALPHABET, INSTRUMENT_ID_MAX, errors
    )
    method = text_field(
        body, "paymentMethodCode", METHOD_CODE, METHOD_CODE_ALPHABET, METHOD_CODE_MAX, errors
    )
    amount = amount_field(body, errors, required=False)
    order_reference = reference_field(body, "orderReference", errors, required=False)
    customer_reference = reference_field(body, "customerReference", errors, required=False)
    if errors or instrument is None or method is None:
        return errors
    return PlaceOrderRequest(instrument, method, amount, order_reference, customer_reference)


def parse_init(body: object) -> InitRequest | list[FieldError]:
    """Validate a payments/init body (empty allowed); ``dropIn`` is refused with the reason."""
    if body is None:
        return InitRequest(DEFAULT_INIT_TYPE)
    if not isinstance(body, Mapping):
        return [FieldError("", "the body must be a JSON object")]
    errors: list[FieldError] = []
    holder = reference_field(body, "holderReference", errors, required=False)
    init_type = body.get("type", DEFAULT_INIT_TYPE)
    if init_type == "dropIn":
        errors.append(FieldError("type", DROP_IN_EXPLANATION))
    elif init_type not in INIT_TYPES:
        errors.append(FieldError("type", "must be 'secureFields' or 'tokenization'"))
    if errors:
        return errors
    return InitRequest(str(init_type), holder)
