"""structlog redaction: secrets, signatures, tokens and card numbers never reach the output."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from shared.logging import (
    configure_logging,
    redact,
    redact_text,
    redact_value,
)
from tests.conftest import Output


def test_secret_named_fields_are_redacted(json_logs: Output) -> None:
    structlog.get_logger("t").info(
        "payrails.call", client_secret="abc", x_signature="c2lnbmF0dXJl", access_token="tok"
    )
    line = json_logs.lines()[-1]
    assert line["client_secret"] == line["x_signature"] == line["access_token"] == "[REDACTED]"


@pytest.mark.parametrize(
    "key",
    [
        "secrets",
        "tokens",
        "signatures",
        "PAYRAILS_WEBHOOK_SECRETS",
        "webhook_keys",
        "hmacKey",
        "signing-key",
        "apiKeys",
    ],
)
def test_plural_and_compound_secret_names_are_redacted(key: str) -> None:
    assert redact_value(key, ["value-1"]) == "[REDACTED]"


@pytest.mark.parametrize("key", ["status", "idempotency_key", "event_id", "reasons", "passes"])
def test_ordinary_names_are_kept(key: str) -> None:
    assert redact_value(key, "value-1") == "value-1"


def test_console_output_is_redacted_too() -> None:
    out = io.StringIO()
    structlog.reset_defaults()
    try:
        configure_logging("INFO", json=False, stream=out)
        structlog.get_logger("t").info("call", client_secret="abc-secret", note="4242424242424242")
    finally:
        structlog.reset_defaults()
        logging.basicConfig(force=True, handlers=[logging.NullHandler()])
    text = out.getvalue()
    assert "abc-secret" not in text
    assert "4242424242424242" not in text
    assert "[REDACTED]" in text


def test_card_numbers_in_free_text_are_masked(json_logs: Output) -> None:
    structlog.get_logger("t").info("note", detail="paid with 4242 4242 4242 4242")
    out = json_logs.getvalue()
    assert "4242 4242 4242 4242" not in out
    assert "****4242" in out


def test_stdlib_records_are_redacted_too(json_logs: Output) -> None:
    logging.getLogger("aiohttp.access").info("GET with Authorization: Bearer abc.def.ghi")
    out = json_logs.getvalue()
    assert "abc.def.ghi" not in out


def test_nested_mappings_are_redacted() -> None:
    redacted = redact_value("body", {"card": {"cardNumber": "4111111111111111", "last4": "1111"}})
    assert redacted == {"card": {"cardNumber": "[REDACTED]", "last4": "1111"}}


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1111-01 declined",  # a PAN with a suffix group
        "id 99-4111111111111111",  # a PAN after a prefix group
        "delivery 35819568-5522-4477-9b8b-260a3852b98b",  # a UUID whose digit groups pass Luhn
    ],
)
def test_a_luhn_valid_pan_inside_a_longer_grouped_run_is_masked(text: str) -> None:
    masked = redact_text(text)
    assert "[CARD ****" in masked
    digits = "".join(ch for ch in masked if ch.isdigit())
    assert "4111111111111111" not in digits
    assert "3581956855224477" not in digits


def test_numbers_that_fail_luhn_are_left_alone() -> None:
    assert redact_text("order 1234567890123") == "order 1234567890123"


def test_url_credentials_are_hidden() -> None:
    assert "guest:guest" not in redact_text("amqp://guest:guest@127.0.0.1:5672/")


# Text that exercises every branch of the scan: digits, separators, "bearer", "://", non-ASCII.
suspicious_text = st.text(
    alphabet=st.sampled_from(list("0123456789 -:/@abBeErR\u0663\u00e9x")), max_size=40
)
field_values = st.one_of(suspicious_text, st.integers(), st.none(), st.booleans())
field_names = st.sampled_from(["event", "detail", "note", "token", "amount", "url", "reason"])


@given(fields=st.dictionaries(field_names, field_values, max_size=7))
def test_one_scan_per_line_redacts_exactly_as_field_by_field_would(fields: dict[str, Any]) -> None:
    expected = {key: redact_value(key, value) for key, value in fields.items()}
    assert redact(None, "info", dict(fields)) == expected


def test_a_card_number_in_non_ascii_text_is_still_masked() -> None:
    line = redact(None, "info", {"note": "carte n\u00b0 4111 1111 1111 1111 refus\u00e9e"})
    assert "4111 1111 1111 1111" not in line["note"]
