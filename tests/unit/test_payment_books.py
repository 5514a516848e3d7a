"""record_payment keeps one payment's data on the order; another payment replaces it whole."""

from __future__ import annotations

from decimal import Decimal

from shared.db.models import Order
from shared.payment_books import payment_json, record_payment
from shared.payrails.payment_record import CardDisplay, PaymentRecord

FIRST = PaymentRecord(
    payment_id="pay-1",
    psp_reference="psp-1",
    method_code="card",
    card=CardDisplay("visa", "9995"),
    threeds_outcome="authenticated_frictionless",
    result_code="InsufficientBalance",
)


def order() -> Order:
    return Order(reference="ord_1", amount_value=Decimal("12.50"), currency="EUR")


def test_the_same_payment_reported_with_less_keeps_what_it_had() -> None:
    booked = order()
    record_payment(booked, FIRST)
    record_payment(booked, PaymentRecord(payment_id="pay-1", result_code="InsufficientBalance"))

    assert (booked.psp_reference, booked.card_last4, booked.threeds_outcome) == (
        "psp-1",
        "9995",
        "authenticated_frictionless",
    )


def test_another_payment_replaces_every_field_of_the_first() -> None:
    booked = order()
    record_payment(booked, FIRST)
    record_payment(booked, PaymentRecord(payment_id="pay-2", card=CardDisplay("mastercard", None)))

    assert (
        booked.payrails_payment_id,
        booked.psp_reference,
        booked.card_network,
        booked.card_last4,
        booked.threeds_outcome,
    ) == ("pay-2", None, "mastercard", None, None)


def test_the_order_method_code_from_checkout_is_not_overwritten() -> None:
    booked = order()
    booked.payment_method_code = "card"
    record_payment(booked, PaymentRecord(payment_id="pay-1", method_code="applePay"))

    assert booked.payment_method_code == "card"


def test_no_payment_id_means_no_payment_object() -> None:
    assert payment_json(order(), None) is None


def test_the_payment_object_leaves_out_what_payrails_did_not_give() -> None:
    booked = order()
    record_payment(booked, PaymentRecord(payment_id="pay-1", method_code="card"))

    assert payment_json(booked, None) == {
        "paymentId": "pay-1",
        "paymentMethodCode": "card",
        "resultCode": None,
    }
