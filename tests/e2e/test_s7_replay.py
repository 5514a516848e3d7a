"""Scenario 7: old, correctly signed events replayed later change no order.

Two kinds of old event: copies of events the worker has already seen (the inbox drops them),
and executionActionPending events held back until every order is final, so that the worker
meets them for the first time late: it re-polls, sees the final state, and changes nothing.
"""

from __future__ import annotations

import copy
import json

import pytest

from tests.e2e.conftest import Scenario
from tests.e2e.counting import Figures, metric_total, wait_until
from tests.e2e.drivers import Delivery, redeliver_until_accepted, steady_load
from tests.e2e.flows import Judge, capture_webhooks, plan, wait_processed
from tests.e2e.sizes import size

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(size(300, 3000))]

CARDS = ("approve", "challenge", "decline", "unknown", "cascade")
DUPLICATES = "recon_events_processed_total"


def _copies(deliveries: list[Delivery]) -> list[Delivery]:
    return [Delivery(d.event_id, d.body, d.signature) for d in deliveries]


def _is_pending(delivery: Delivery) -> bool:
    return bool(json.loads(delivery.body).get("event") == "executionActionPending")


async def test_replayed_old_signed_events_change_no_order(scenario: Scenario) -> None:
    stack, control, ledger, backend, tag, needles = scenario
    placed, executions, old = await capture_webhooks(
        stack, control, plan(tag, size(10, 100), CARDS), needles["signature"]
    )
    first = _copies([d for d in old if not _is_pending(d)])
    held = _copies([d for d in old if _is_pending(d)])
    await steady_load(stack.ingress_urls, first, rate=100, max_seconds=120)
    await redeliver_until_accepted(stack.ingress_urls, first, max_seconds=60)
    await wait_processed(ledger, first, timeout=60)
    settled = await Judge(control, ledger, backend).settle(
        tag, expected_orders=len(placed), timeout=120
    )
    assert settled.ok, settled

    before = await ledger.orders(tag)
    messages_before = copy.deepcopy({ref: backend.by_order.get(ref) for ref in before})
    metrics_urls = [f"{w.admin_url}/metrics" for w in stack.workers]
    duplicates_before = await metric_total(metrics_urls, DUPLICATES, outcome="duplicate")

    await redeliver_until_accepted(stack.ingress_urls, held, max_seconds=60)
    held_processed = await wait_processed(ledger, held, timeout=60)

    replays = _copies(old)
    await steady_load(stack.ingress_urls, replays, rate=100, max_seconds=120)
    unanswered = await redeliver_until_accepted(stack.ingress_urls, replays, max_seconds=60)
    resent = [d for d in await control.deliveries() if d["executionId"] in executions]
    for delivery in resent:
        await control.resend(delivery["id"])
    expected = len(replays) + len(resent)
    seen_all = await wait_until(
        lambda: _duplicates_reached(metrics_urls, duplicates_before + expected), timeout=120
    )
    after = await ledger.orders(tag)
    messages_after = {ref: backend.by_order.get(ref) for ref in after}

    changed = [ref for ref in before if before[ref] != after.get(ref)]
    figures = Figures("s7 replay")
    figures["orders"] = len(before)
    figures["first_seen_late"] = len(held)
    figures["replayed_verbatim"] = len(replays)
    figures["resent_by_sandbox"] = len(resent)
    figures["duplicates_recognised"] = int(
        await metric_total(metrics_urls, DUPLICATES, outcome="duplicate") - duplicates_before
    )
    figures["orders_changed"] = len(changed)
    figures.print(stack.config.run_dir)

    assert held, "the card mix yields executionActionPending events to hold back"
    assert len(held_processed) == len(held), "every held-back event reached the inbox late"
    assert unanswered == []
    assert seen_all, "the worker did not see every replayed event"
    assert changed == []
    assert messages_after == messages_before


async def _duplicates_reached(urls: list[str], target: float) -> bool:
    return await metric_total(urls, DUPLICATES, outcome="duplicate") >= target
