"""What the books need from an execution's payment: ids, method, card display data, 3-D Secure.

Read from the execution's ``payments[]`` (a re-polled GET) or ``paymentComposition[]`` (the
webhook's items, which some answers carry too), the same whichever status shape the execution
uses. The payment chosen is the latest one that succeeded, else the latest one: a PSP cascade
lists the primary's decline before the fallback's approval.

Card data is read for display only: the network and the last four digits, never more. A field
holding more digits than that (a masked or even a full card number) yields only its last four.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_LAST4 = re.compile(r"([0-9]{4})\s*\Z")
_SUCCESS_RESULTS = frozenset({"Success", "Accepted"})
_PSP_REFERENCE_FIELDS = ("pspReference", "operationProviderReference", "providerReference")
_LAST4_FIELDS = ("last4", "lastFour", "suffix", "lastDigits")
_NETWORK_FIELDS = ("network", "cardNetwork", "brand", "scheme")
_MAX_ID = 64  # the width of the columns these land in
_MAX_REFERENCE = 128
_MAX_NETWORK = 32


@dataclass(frozen=True, slots=True)
class CardDisplay:
    """A card as a receipt shows it."""

    network: str | None
    last4: str | None


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """One Payrails payment, as far as the books are concerned."""

    payment_id: str
    psp_reference: str | None = None
    method_code: str | None = None
    card: CardDisplay | None = None
    threeds_outcome: str | None = None
    result_code: str | None = None


def payment_record(body: Mapping[str, Any]) -> PaymentRecord | None:
    """The record of the payment that speaks for the execution; None when it shows none."""
    item = _chosen(body)
    if item is None:
        return None
    payment_id = _text(item.get("paymentId"), _MAX_ID) or _text(item.get("id"), _MAX_ID)
    if payment_id is None:
        return None
    return PaymentRecord(
        payment_id=payment_id,
        psp_reference=_first_text(item, _PSP_REFERENCE_FIELDS, _MAX_REFERENCE),
        method_code=_text(item.get("paymentMethodCode"), _MAX_ID),
        card=_card(item),
        threeds_outcome=threeds_outcome(_threeds(item)),
        result_code=_text(item.get("operationResult"), _MAX_ID),
    )


def _chosen(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    items: list[Mapping[str, Any]] = []
    for key in ("payments", "paymentComposition"):
        raw = body.get(key)
        if isinstance(raw, list) and raw:
            items = [item for item in raw if isinstance(item, Mapping)]
            if items:
                break
    succeeded = [item for item in items if item.get("operationResult") in _SUCCESS_RESULTS]
    chosen = succeeded or items
    return chosen[-1] if chosen else None


def _text(value: object, limit: int) -> str | None:
    if isinstance(value, str) and value.strip() and len(value) <= limit:
        return value.strip()
    return None


def _first_text(item: Mapping[str, Any], fields: tuple[str, ...], limit: int) -> str | None:
    for name in fields:
        value = _text(item.get(name), limit)
        if value is not None:
            return value
    return None


def last4(value: object) -> str | None:
    """The last four digits of a display value ("4242", "**** 4242", a whole number), or None."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    match = _LAST4.search(str(value))
    return match.group(1) if match else None


def _card_sources(item: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Where payments put card display data: ``card``, ``paymentInstrument.data``, ``display``."""
    sources: list[Mapping[str, Any]] = []
    for holder in (item, item.get("paymentInstrument"), item.get("paymentMethod")):
        if not isinstance(holder, Mapping):
            continue
        for key in ("card", "data", "display", "displayData"):
            value = holder.get(key)
            if isinstance(value, Mapping):
                sources.append(value)
    return sources


def _card(item: Mapping[str, Any]) -> CardDisplay | None:
    network: str | None = None
    digits: str | None = None
    for source in _card_sources(item):
        network = network or _first_text(source, _NETWORK_FIELDS, _MAX_NETWORK)
        for name in _LAST4_FIELDS:
            digits = digits or last4(source.get(name))
    if network is None and digits is None:
        return None
    return CardDisplay(network.lower() if network else None, digits)


def _threeds(item: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for key in ("threeDS", "threeDs", "threeDSecure", "threeds"):
        value = item.get(key)
        if isinstance(value, Mapping):
            return value
    return None


def threeds_outcome(result: Mapping[str, Any] | None) -> str | None:
    """The 3-D Secure outcome, from the EMV 3DS ``transStatus`` and whether a challenge ran.

    ``authenticated_challenge`` / ``authenticated_frictionless`` (Y), ``attempted`` (A),
    ``failed`` (N), ``rejected`` (R), ``unavailable`` (U); None when no 3-D Secure ran or its
    result cannot be read.
    """
    if result is None:
        return None
    status = result.get("transStatus")
    if status == "Y":
        challenged = result.get("challenged") is True
        return "authenticated_challenge" if challenged else "authenticated_frictionless"
    return _OTHER_STATUSES.get(status) if isinstance(status, str) else None


_OTHER_STATUSES = {"A": "attempted", "N": "failed", "R": "rejected", "U": "unavailable"}
