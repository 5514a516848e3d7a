"""The Luhn checksum of card numbers (used to validate PANs and to spot them in logs)."""

from __future__ import annotations


def luhn_ok(digits: str) -> bool:
    """True when a string of decimal digits passes the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0
