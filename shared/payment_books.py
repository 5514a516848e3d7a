"""The payment data commerce backends book: kept on the order, published in its messages.

The Payrails payment id, the PSP's reference, the payment method, the card's network and last
four digits (never more), the 3-D Secure outcome and the operation's result code, as the
re-polled execution reports them (``shared.payrails.payment_record``).
"""

from __future__ import annotations

from typing import Any

from shared.db.models import Order
from shared.payrails.payment_record import PaymentRecord


def record_payment(order: Order, record: PaymentRecord | None) -> None:
    """Keep ``record`` on the (locked) order.

    Another payment (a new attempt) replaces every field; the same payment reported again
    keeps what an earlier report had and this one leaves out.
    """
    if record is None:
        return
    same = order.payrails_payment_id == record.payment_id
    card = record.card
    order.payrails_payment_id = record.payment_id
    order.psp_reference = _newer(record.psp_reference, order.psp_reference, same)
    order.card_network = _newer(card.network if card else None, order.card_network, same)
    order.card_last4 = _newer(card.last4 if card else None, order.card_last4, same)
    order.threeds_outcome = _newer(record.threeds_outcome, order.threeds_outcome, same)
    if order.payment_method_code is None:
        order.payment_method_code = record.method_code


def _newer(reported: str | None, kept: str | None, same_payment: bool) -> str | None:
    return kept if reported is None and same_payment else reported


def payment_json(order: Order, record: PaymentRecord | None) -> dict[str, Any] | None:
    """The message's ``payment`` object (docs/asyncapi.yaml), or None while none is known."""
    if order.payrails_payment_id is None:
        return None
    body: dict[str, Any] = {
        "paymentId": order.payrails_payment_id,
        "paymentMethodCode": order.payment_method_code,
    }
    if order.psp_reference:
        body["pspReference"] = order.psp_reference
    if order.card_network or order.card_last4:
        body["card"] = {"network": order.card_network, "last4": order.card_last4}
    if order.threeds_outcome:
        body["threeDSecure"] = {"outcome": order.threeds_outcome}
    body["resultCode"] = record.result_code if record is not None else None
    return body


def result_detail(record: PaymentRecord | None) -> dict[str, Any]:
    """What an order transition's history row keeps of the payment: its result code."""
    if record is None or record.result_code is None:
        return {}
    return {"paymentId": record.payment_id, "resultCode": record.result_code}
