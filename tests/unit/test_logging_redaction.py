"""structlog redaction: secrets, signatures, tokens and card numbers never reach the output."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from shared.logging import (
    TickBufferedStream,
    configure_logging,
    redact,
    redact_text,
    redact_value,
)


class Output(io.StringIO):
    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.getvalue().splitlines()]


@pytest.fixture
def json_logs() -> Iterator[Output]:
    out = Output()
    structlog.reset_defaults()
    configure_logging("INFO", json=True, stream=out)
    yield out
    structlog.reset_defaults()
    logging.basicConfig(force=True, handlers=[logging.NullHandler()])


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


class Recorder(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


async def test_lines_written_in_one_tick_leave_together_in_order_after_it() -> None:
    sink = Recorder()
    stream = TickBufferedStream(sink)
    for n in range(5):
        stream.write(f"line {n}\n")
    assert sink.getvalue() == ""

    await asyncio.sleep(0)

    assert sink.getvalue() == "".join(f"line {n}\n" for n in range(5))
    assert sink.writes == 1


def test_outside_an_event_loop_each_line_is_written_at_once() -> None:
    sink = Recorder()
    TickBufferedStream(sink).write("starting\n")
    assert sink.getvalue() == "starting\n"


async def test_a_line_from_a_thread_without_a_loop_is_kept_in_order_with_the_loops() -> None:
    sink = Recorder()
    stream = TickBufferedStream(sink)
    stream.write("from the loop\n")

    await asyncio.to_thread(stream.write, "from a thread\n")
    await asyncio.sleep(0)

    assert sink.getvalue() == "from the loop\nfrom a thread\n"


def test_a_line_after_its_loop_stopped_goes_out_at_once_with_what_the_loop_left() -> None:
    sink = Recorder()
    stream = TickBufferedStream(sink)
    loop = asyncio.new_event_loop()
    try:
        # The loop stops in the tick that buffered the line: its drain never runs.
        loop.call_soon(lambda: (stream.write("in the loop\n"), loop.stop()))
        loop.run_forever()
        assert sink.getvalue() == ""

        stream.write("after it\n")
    finally:
        loop.close()

    assert sink.getvalue() == "in the loop\nafter it\n"
