"""Scenario 5: every Payrails webhook delivered three times, in shuffled order."""

from __future__ import annotations

import random

import pytest

from tests.e2e.conftest import Scenario
from tests.e2e.counting import Figures
from tests.e2e.drivers import Delivery, redeliver_until_accepted, steady_load
from tests.e2e.flows import Judge, capture_webhooks, plan, wait_processed
from tests.e2e.sizes import size

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(size(300, 3000))]

COPIES = 3


async def test_tripled_shuffled_webhooks_end_in_the_sandboxs_state_for_every_order(
    scenario: Scenario,
) -> None:
    stack, control, ledger, backend, tag, needles = scenario
    placed, _, captured = await capture_webhooks(
        stack, control, plan(tag, size(30, 300)), needles["signature"]
    )
    copies = [Delivery(d.event_id, d.body, d.signature) for d in captured for _ in range(COPIES)]
    random.Random(5).shuffle(copies)

    result = await steady_load(stack.ingress_urls, copies, rate=200, max_seconds=600)
    unanswered = await redeliver_until_accepted(stack.ingress_urls, copies, max_seconds=60)
    inbox = await wait_processed(ledger, copies, timeout=120)
    verdict = await Judge(control, ledger, backend).settle(
        tag, expected_orders=len(placed), timeout=120
    )

    matched = verdict.orders - len(verdict.mismatched)
    figures = Figures("s5 duplicates and reordering")
    figures["webhooks"] = len(captured)
    figures["deliveries"] = result.sent
    figures["distinct_events_processed"] = len(inbox)
    figures["matching_sandbox_pct"] = 100.0 * matched / verdict.orders if verdict.orders else 0.0
    figures.values.update(verdict.summary())
    figures.print(stack.config.run_dir)

    assert captured, "the sandbox sent no webhooks to replay"
    assert unanswered == []
    assert len(inbox) == len({d.event_id for d in captured})
    assert verdict.ok, verdict
