"""Webhook parsing and the event-id rule."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import InvalidPayload
from shared.events import WebhookEvent, derive_event_id, parse_object

COMPLETED = {
    "event": "executionActionCompleted",
    "time": "2026-01-01T10:00:00.000Z",
    "details": {
        "action": "authorize",
        "actionId": "1aa0ef20-36cb-4485-b60e-0526c3699014",
        "success": True,
        "execution": {"id": "exec-1", "merchantReference": "order-1"},
    },
}


def test_a_retried_delivery_maps_to_the_same_event_id() -> None:
    body = json.dumps(COMPLETED).encode()
    assert WebhookEvent.from_body(body).event_id == WebhookEvent.from_body(body).event_id


def test_key_order_does_not_change_the_event_id() -> None:
    reordered = dict(reversed(list(COMPLETED.items())))
    assert derive_event_id(reordered) == derive_event_id(COMPLETED)


def test_another_action_on_the_same_execution_gets_another_id() -> None:
    other = {**COMPLETED, "details": {**COMPLETED["details"], "actionId": "other"}}  # type: ignore[dict-item]
    assert derive_event_id(other) != derive_event_id(COMPLETED)


def test_an_explicit_id_wins() -> None:
    assert derive_event_id({**COMPLETED, "id": "evt_123"}) == "evt_123"


def test_a_long_explicit_id_is_hashed_not_cut() -> None:
    first, second = "e" * 300 + "1", "e" * 300 + "2"
    assert derive_event_id({"id": first}) != derive_event_id({"id": second})
    assert len(derive_event_id({"id": "é" * 150}).encode()) <= 200


def test_event_fields_are_extracted() -> None:
    event = WebhookEvent.from_body(json.dumps(COMPLETED).encode())
    assert (event.execution_id, event.merchant_reference, event.success) == (
        "exec-1",
        "order-1",
        True,
    )
    assert event.is_reconciled


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"not json", "not valid JSON"), (b"[]", "not a JSON object"), (b'{"event": 3}', "no string")],
)
def test_unparseable_bodies_raise_invalid_payload(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidPayload, match=reason):
        parse_object(body)


@given(st.binary(max_size=200))
def test_parser_only_ever_raises_invalid_payload(body: bytes) -> None:
    with contextlib.suppress(InvalidPayload):
        WebhookEvent.from_body(body)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=10,
    )
)
def test_any_json_object_with_an_event_parses_or_is_rejected_cleanly(details: object) -> None:
    body = json.dumps({"event": "x", "details": details}).encode()
    event = WebhookEvent.from_body(body)
    assert event.event_id.startswith("drv_")
    assert event.unknown_result is None or isinstance(event.unknown_result, str)


def test_a_surrogate_pair_escape_is_text_and_parses() -> None:
    assert parse_object(b'{"event": "x", "note": "\\ud83d\\ude00"}')["note"] == "\U0001f600"


@pytest.mark.parametrize(
    "body",
    [
        b'{"event": "\\ud800"}',
        b'{"event": "x", "details": {"execution": {"merchantReference": "\\udc00"}}}',
        b'{"event": "x", "id": "\xed\xa0\x80"}',
        '{"event": "x", "note": "\\udfff"}'.encode("utf-16"),
    ],
)
def test_a_lone_surrogate_anywhere_in_the_body_is_refused_as_not_text(body: bytes) -> None:
    with pytest.raises(InvalidPayload, match="lone surrogate"):
        parse_object(body)


def with_details(**details: object) -> WebhookEvent:
    body = {**COMPLETED, "details": {**COMPLETED["details"], **details}}  # type: ignore[dict-item]
    return WebhookEvent.from_body(json.dumps(body).encode())


@pytest.mark.parametrize(
    ("details", "result"),
    [
        ({"paymentComposition": [{"operationResult": "ProviderTimeout"}]}, "ProviderTimeout"),
        (
            {
                "paymentComposition": [
                    {"operationResult": "Timeout"},
                    {"operationResult": "GenericRejection"},
                ]
            },
            "Timeout",  # an unknown first attempt counts, whatever the later one did
        ),
        ({"paymentComposition": [{"status": "Unknown", "operationResult": "x"}]}, "Unknown"),
        ({"operationResult": "Unknown"}, "Unknown"),
        (
            {"errors": [{"reason": {"result": "UnexpectedProviderResponse"}}]},
            "UnexpectedProviderResponse",
        ),
        ({"paymentComposition": [{"operationResult": "InsufficientBalance"}]}, None),
        ({"paymentComposition": "not a list"}, None),
        ({}, None),
    ],
)
def test_an_unknown_result_is_read_from_the_webhook(
    details: dict[str, object], result: str | None
) -> None:
    assert with_details(**details).unknown_result == result


def test_another_actions_unknown_result_says_nothing_about_the_authorization() -> None:
    timeout = [{"operationResult": "ProviderTimeout"}]
    assert with_details(action="refund", paymentComposition=timeout).unknown_result is None
