"""Exact amounts with ISO 4217 currencies. Never floats."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from shared.errors import InvalidPayload

# ISO 4217 active codes and their minor units (digits after the decimal point).
_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE = "BHD IQD JOD KWD LYD OMR TND"
_FOUR = "CLF UYW"
_TWO = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD "
    "FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD "
    "KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD "
    "NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP "
    "SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VES "
    "WST XCD XCG YER ZAR ZMW ZWG"
)
MINOR_UNITS: dict[str, int] = {
    **{c: 0 for c in _ZERO.split()},
    **{c: 2 for c in _TWO.split()},
    **{c: 3 for c in _THREE.split()},
    **{c: 4 for c in _FOUR.split()},
}

# Every amount ends up in a Numeric(18, 4) column (shared/db/models.py AMOUNT): 18 significant
# digits, 4 of them after the decimal point, so at most 18 - 4 = 14 before it. A larger value
# would overflow the column on insert, so parsing refuses it with a precise reason instead.
AMOUNT_PRECISION = 18
AMOUNT_SCALE = 4
MAX_INTEGER_DIGITS = AMOUNT_PRECISION - AMOUNT_SCALE
TOO_MANY_INTEGER_DIGITS = f"must have at most {MAX_INTEGER_DIGITS} digits before the decimal point"

_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)(\.[0-9]+)?\Z")  # ASCII digits; \Z: no trailing newline


def is_currency(code: str) -> bool:
    """True for an active ISO 4217 alphabetic code."""
    return code in MINOR_UNITS


@dataclass(frozen=True, slots=True)
class Money:
    """A positive exact amount in one ISO 4217 currency."""

    value: Decimal
    currency: str

    @classmethod
    def parse(cls, value: object, currency: object) -> Money:
        """Parse Payrails' ``{value: "12.50", currency: "EUR"}``; raise InvalidPayload precisely."""
        if not isinstance(currency, str) or not is_currency(currency):
            raise InvalidPayload(f"currency {currency!r} is not an ISO 4217 code")
        if not isinstance(value, str) or not _DECIMAL.match(value):
            raise InvalidPayload(f"amount {value!r} is not a decimal string such as '12.50'")
        if len(value.partition(".")[0]) > MAX_INTEGER_DIGITS:
            raise InvalidPayload(f"amount {TOO_MANY_INTEGER_DIGITS}")
        digits = MINOR_UNITS[currency]
        fraction = value.partition(".")[2]
        if len(fraction) != digits:
            raise InvalidPayload(f"{currency} amounts take exactly {digits} decimal places")
        try:
            amount = Decimal(value)
        except InvalidOperation as exc:
            raise InvalidPayload(f"amount {value!r} is not a decimal") from exc
        if amount <= 0:
            raise InvalidPayload("amount must be positive")
        return cls(amount, currency)

    def format_value(self) -> str:
        """The value as Payrails writes it, with the currency's minor digits."""
        digits = MINOR_UNITS.get(self.currency, 2)
        return f"{self.value:.{digits}f}"

    def to_json(self) -> dict[str, str]:
        return {"value": self.format_value(), "currency": self.currency}
