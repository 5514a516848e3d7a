"""The request ledger: each request is logged and counted once, right after its tick."""

from __future__ import annotations

import asyncio

from aiohttp import web
from structlog.testing import capture_logs

from ingress.keys import LEDGER
from ingress.ledger import RequestLedger, ledger_ctx
from tests.waiting import sample


def accepted(event_id: str) -> dict[str, object]:
    return {"key_index": 1, "outcome": "accepted", "event_id": event_id}


async def test_requests_of_a_tick_are_logged_and_counted_in_order_once_the_tick_ends() -> None:
    ledger = RequestLedger(asyncio.get_running_loop())
    requests = sample("recon_webhook_requests_total", outcome="accepted")
    matches = sample("recon_webhook_signature_key_matches_total", key_index="1")

    with capture_logs() as lines:
        ledger.record(accepted("evt-1"), 0.004, None)
        ledger.record(accepted("evt-2"), 0.002, None)
        assert lines == []  # nothing yet: the responses leave first
        await asyncio.sleep(0)

    assert [(line["event"], line["event_id"]) for line in lines] == [
        ("webhook.handled", "evt-1"),
        ("webhook.handled", "evt-2"),
    ]
    assert lines[0]["duration_ms"] == 4.0
    assert sample("recon_webhook_requests_total", outcome="accepted") == requests + 2
    assert sample("recon_webhook_signature_key_matches_total", key_index="1") == matches + 2


async def test_a_failure_is_logged_at_error_with_its_exception() -> None:
    ledger = RequestLedger(asyncio.get_running_loop())
    line = {"outcome": "internal_error", "reason": "RuntimeError"}

    with capture_logs() as lines:
        ledger.record(line, 0.001, RuntimeError("a bug"))
        await asyncio.sleep(0)

    assert lines[0]["log_level"] == "error"
    assert isinstance(lines[0]["exc_info"], RuntimeError)
    assert "key_index" not in lines[0]  # refused before verifying: no key matched


async def test_what_is_still_unsettled_at_shutdown_is_settled_by_the_cleanup() -> None:
    app = web.Application()
    context = ledger_ctx(app)
    await anext(context)

    with capture_logs() as lines:
        app[LEDGER].record(accepted("evt-last"), 0.001, None)
        await anext(context, None)  # the cleanup, in the same tick as the record

    assert [line["event_id"] for line in lines] == ["evt-last"]
