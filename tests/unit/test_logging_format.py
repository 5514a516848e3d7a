"""The shape of every line: structlog's and the standard library's alike, one JSON object each."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import structlog

from tests.conftest import Output


def test_structlog_and_stdlib_lines_carry_logger_level_and_a_utc_timestamp(
    json_logs: Output,
) -> None:
    structlog.get_logger("recon.test").warning("from.structlog", order_reference="ord-1")
    logging.getLogger("aiohttp.access").warning("from %s", "stdlib")

    ours, theirs = json_logs.lines()[-2:]
    assert (ours["logger"], ours["level"], ours["event"]) == (
        "recon.test",
        "warning",
        "from.structlog",
    )
    assert (theirs["logger"], theirs["level"], theirs["event"]) == (
        "aiohttp.access",
        "warning",
        "from stdlib",
    )
    for line in (ours, theirs):
        stamp = str(line["timestamp"])
        assert stamp.endswith("Z")
        assert datetime.fromisoformat(stamp).tzinfo == UTC


def test_an_exception_is_rendered_as_its_traceback_text(json_logs: Output) -> None:
    try:
        int("boom")
    except ValueError:
        structlog.get_logger("recon.test").exception("failed")

    line = json_logs.lines()[-1]
    assert line["level"] == "error"
    assert "ValueError: invalid literal" in str(line["exception"])
