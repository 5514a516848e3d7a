"""Scenario 1: RabbitMQ stopped and started under steady webhook load."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.e2e.conftest import Scenario
from tests.e2e.counting import Figures
from tests.e2e.drivers import redeliver_until_accepted, steady_load
from tests.e2e.flows import Judge, plan, shop, signed_deliveries, wait_processed
from tests.e2e.outages import take_down
from tests.e2e.sizes import size

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(size(300, 3000))]


async def test_broker_restart_under_load_loses_no_accepted_webhook(scenario: Scenario) -> None:
    stack, control, ledger, backend, tag, needles = scenario
    rate, seconds = size(50, 500), size(8, 60)
    placed = await shop(stack, plan(tag, size(12, 120)))
    deliveries = signed_deliveries(stack, placed, rate * seconds, needles["signature"])
    starts = stack.starts()

    load = asyncio.create_task(
        steady_load(stack.ingress_urls, deliveries, rate=rate, max_seconds=seconds)
    )
    await asyncio.sleep(seconds * 0.3)
    outage_wall = time.time()
    window = await take_down(stack.broker_outage(), hold=size(3, 5))
    up_wall = outage_wall + window.seconds
    result = await load
    answered_200 = sum(1 for d in deliveries if d.accepted)
    unanswered = await redeliver_until_accepted(stack.ingress_urls, deliveries, max_seconds=90)
    inbox = await wait_processed(ledger, deliveries, timeout=size(120, 600))
    verdict = await Judge(control, ledger, backend).settle(
        tag, expected_orders=len(placed), timeout=120
    )

    accepted_after = [
        d.accepted_at for d in deliveries if d.accepted_at and d.accepted_at > window.up_at
    ]
    first_processed = await ledger.first_processed_after(up_wall)
    lost = [d.event_id for d in deliveries if d.accepted and d.event_id not in inbox]
    figures = Figures("s1 broker restart")
    figures["sent"] = result.sent
    figures["rate_per_s"] = result.rate
    figures["first_pass_200"] = answered_200
    figures["first_pass_statuses"] = dict(sorted(result.by_status.items()))
    figures["outage_mode"] = stack.mode  # real: the server stopped; proxy: a cut TCP proxy
    figures["outage_s"] = window.seconds
    figures["ingress_recovery_s"] = (min(accepted_after) - window.up_at) if accepted_after else -1.0
    figures["worker_recovery_s"] = (first_processed - up_wall) if first_processed else -1.0
    figures["never_accepted"] = len(unanswered)
    figures["lost"] = len(lost)
    figures.values.update(verdict.summary())
    figures.print(stack.config.run_dir)

    assert set(result.by_status) <= {200, 503}, result.by_status  # an outage is a 503, never a 500
    assert lost == []
    assert unanswered == []
    assert verdict.ok, verdict
    await stack.assert_rode_it_out(starts)
