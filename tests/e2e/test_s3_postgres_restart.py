"""Scenario 3: PostgreSQL stopped and started while webhooks and orders keep coming."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.e2e.conftest import Scenario
from tests.e2e.counting import Figures, Ledger, wait_until
from tests.e2e.drivers import redeliver_until_accepted, steady_load
from tests.e2e.flows import Judge, plan, shop, signed_deliveries, wait_processed
from tests.e2e.outages import take_down
from tests.e2e.sizes import size

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(size(300, 3000))]

RECOVERY_BOUND_SECONDS = 30.0


async def test_postgres_restart_loses_nothing_and_processing_resumes(scenario: Scenario) -> None:
    stack, control, ledger, backend, tag, needles = scenario
    rate, seconds = size(30, 200), size(8, 40)
    placed = await shop(stack, plan(tag, size(12, 60)))
    deliveries = signed_deliveries(stack, placed, rate * seconds, needles["signature"])
    during = plan(f"{tag}d", size(6, 30))
    starts = stack.starts()

    load = asyncio.create_task(
        steady_load(stack.ingress_urls, deliveries, rate=rate, max_seconds=seconds)
    )
    await asyncio.sleep(seconds * 0.3)
    shoppers = asyncio.create_task(shop(stack, during, concurrency=6))
    down_wall = time.time()
    hold = size(3, 5)
    window = await take_down(stack.database_outage(), hold=hold)
    up_wall = down_wall + window.seconds
    # PostgreSQL was down from (at least) down_wall + hold: an event committed after that was
    # processed once it came back, possibly before take_down saw it answer (up_wall).
    back_from = down_wall + hold
    resumed = await wait_until(
        lambda: _processed_since(ledger, back_from), timeout=RECOVERY_BOUND_SECONDS, interval=0.2
    )
    first_processed = await ledger.first_processed_after(back_from)
    result = await load
    placed_during = await shoppers
    unanswered = await redeliver_until_accepted(stack.ingress_urls, deliveries, max_seconds=60)
    inbox = await wait_processed(ledger, deliveries, timeout=size(90, 300))
    verdict = await Judge(control, ledger, backend).settle(
        tag, expected_orders=len(placed) + len(placed_during), timeout=120
    )

    lost = [d.event_id for d in deliveries if d.accepted and d.event_id not in inbox]
    figures = Figures("s3 postgres restart")
    figures["sent"] = result.sent
    figures["first_pass_statuses"] = dict(sorted(result.by_status.items()))
    figures["outage_mode"] = stack.mode  # real: the server stopped; proxy: a cut TCP proxy
    figures["outage_s"] = window.seconds
    # From take_down seeing PostgreSQL answer; negative: the worker was quicker than that check.
    figures["recovery_s"] = (first_processed - up_wall) if first_processed else None
    figures["orders_during_outage"] = len(placed_during)
    figures["lost"] = len(lost)
    figures["never_accepted"] = len(unanswered)
    figures.values.update(verdict.summary())
    figures.print(stack.config.run_dir)

    assert resumed, f"no event processed within {RECOVERY_BOUND_SECONDS}s of PostgreSQL's return"
    assert lost == []
    assert unanswered == []
    assert verdict.ok, verdict
    await stack.assert_rode_it_out(starts)


async def _processed_since(ledger: Ledger, wall: float) -> bool:
    return await ledger.first_processed_after(wall) is not None
