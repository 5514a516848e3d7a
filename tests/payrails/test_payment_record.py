"""Execution.from_api reads what the books need from the payment, in both status shapes."""

from __future__ import annotations

from typing import Any

import pytest

from shared.payrails.models import Execution
from shared.payrails.payment_record import CardDisplay, PaymentRecord, last4, threeds_outcome

FULL_PAN = "4000002760003184"
ARRAY_STATUS = [
    {"code": "created", "time": "2026-01-01T00:00:00.000Z"},
    {"code": "authorizeSuccessful", "time": "2026-01-01T00:00:02.000Z"},
    {"code": "authorizeRequested", "time": "2026-01-01T00:00:01.000Z"},
]
SHAPES = {"documented": ARRAY_STATUS, "seed": "authorized"}
FRICTIONLESS = {"challenged": False, "enrolled": "Y", "transStatus": "Y", "version": "2.2.0"}


def payment(**extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "paymentId": "pay-1",
        "status": "Authorized",
        "operationResult": "Success",
        "paymentMethodCode": "card",
        "pspReference": "psp_abc123",
        "paymentInstrument": {"id": "ins-1", "data": {"network": "Visa", "suffix": "4242"}},
        "threeDS": FRICTIONLESS,
    }
    item.update(extra)
    return item


def execution(status: Any, **extra: Any) -> Execution:
    return Execution.from_api({"id": "ex-1", "merchantReference": "o-1", "status": status, **extra})


@pytest.mark.parametrize("shape", SHAPES)
def test_payments_give_id_reference_method_card_3ds_and_result_in_either_status_shape(
    shape: str,
) -> None:
    parsed = execution(SHAPES[shape], payments=[payment()])

    assert parsed.payment == PaymentRecord(
        payment_id="pay-1",
        psp_reference="psp_abc123",
        method_code="card",
        card=CardDisplay("visa", "4242"),
        threeds_outcome="authenticated_frictionless",
        result_code="Success",
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_webhook_style_composition_reads_the_provider_reference(shape: str) -> None:
    item = {
        "paymentId": "pay-2",
        "paymentMethodCode": "card",
        "operationType": "Authorize",
        "operationResult": "Success",
        "operationProviderReference": "ref_88355112",
        "threeDS": {"challenged": True, "transStatus": "Y"},
    }

    parsed = execution(SHAPES[shape], paymentComposition=[item])

    assert parsed.payment is not None
    assert (parsed.payment.payment_id, parsed.payment.psp_reference) == ("pay-2", "ref_88355112")
    assert parsed.payment.threeds_outcome == "authenticated_challenge"
    assert parsed.payment.card is None


def test_a_cascade_books_the_approving_payment_not_the_declined_one() -> None:
    declined = payment(paymentId="pay-primary", status="Failed", operationResult="GenericRejection")
    approved = payment(paymentId="pay-secondary", pspReference="psp_second")

    parsed = execution(ARRAY_STATUS, payments=[declined, approved])

    assert parsed.payment is not None
    assert (parsed.payment.payment_id, parsed.payment.psp_reference) == (
        "pay-secondary",
        "psp_second",
    )


def test_a_declined_payment_is_booked_with_its_result_code() -> None:
    declined = payment(status="Failed", operationResult="InsufficientBalance", threeDS=None)

    parsed = execution("failed", payments=[declined])

    assert parsed.payment is not None
    assert (parsed.payment.result_code, parsed.payment.threeds_outcome) == (
        "InsufficientBalance",
        None,
    )


@pytest.mark.parametrize(
    "card",
    [
        {"network": "visa", "suffix": FULL_PAN},
        {"network": "visa", "last4": FULL_PAN, "number": FULL_PAN},
        {"network": "visa", "suffix": "400000******3184"},
        {"network": "visa", "lastFour": "**** **** **** 3184", "cardNumber": FULL_PAN},
    ],
)
def test_a_full_card_number_in_the_payload_is_never_kept(card: dict[str, Any]) -> None:
    item = payment(paymentInstrument={"id": "ins-1", "data": card}, card=card)

    parsed = execution(ARRAY_STATUS, payments=[item])

    assert parsed.payment is not None
    assert parsed.payment.card == CardDisplay("visa", "3184")
    assert FULL_PAN not in repr(parsed.payment)
    assert FULL_PAN not in repr(parsed)


def test_no_payments_means_no_record() -> None:
    assert execution("created").payment is None
    assert execution(ARRAY_STATUS, payments=[{"status": "Authorized"}]).payment is None


def test_an_oversized_id_or_reference_is_left_out_rather_than_cut() -> None:
    parsed = execution(ARRAY_STATUS, payments=[payment(pspReference="r" * 129)])

    assert parsed.payment is not None
    assert parsed.payment.psp_reference is None
    assert execution(ARRAY_STATUS, payments=[payment(paymentId="p" * 65)]).payment is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("4242", "4242"), ("**** 1111", "1111"), (FULL_PAN, "3184"), ("42", None), (None, None)],
)
def test_last4_keeps_four_digits_at_most(value: object, expected: str | None) -> None:
    assert last4(value) == expected


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"challenged": True, "transStatus": "Y"}, "authenticated_challenge"),
        ({"challenged": False, "transStatus": "Y"}, "authenticated_frictionless"),
        ({"transStatus": "A"}, "attempted"),
        ({"challenged": True, "transStatus": "N"}, "failed"),
        ({"transStatus": "R"}, "rejected"),
        ({"transStatus": "U"}, "unavailable"),
        ({"transStatus": "Z"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_threeds_outcome_follows_trans_status_and_challenge(
    result: dict[str, Any] | None, expected: str | None
) -> None:
    assert threeds_outcome(result) == expected
