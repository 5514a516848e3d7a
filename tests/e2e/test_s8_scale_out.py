"""Scenario 8: three worker processes and two ingress processes at once, same guarantees."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.e2e.conftest import Scenario
from tests.e2e.counting import Figures, Ledger
from tests.e2e.drivers import Delivery, deliveries_for, redeliver_until_accepted, steady_load
from tests.e2e.flows import Judge, plan, shop, wait_processed
from tests.e2e.harness import Stack
from tests.e2e.sizes import size

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(size(300, 3000))]


async def drain_rate(stack: Stack, ledger: Ledger, deliveries: list[Delivery]) -> tuple[float, int]:
    """Queue a burst while no worker runs, then let every worker drain it: events/s and lost.

    The rate counts what was committed after all workers were healthy, so process start-up is
    not part of it.
    """
    await asyncio.gather(*(worker.stop() for worker in stack.workers))
    await steady_load(stack.ingress_urls, deliveries, rate=size(400, 800), max_seconds=600)
    await redeliver_until_accepted(stack.ingress_urls, deliveries, max_seconds=60)
    for worker in stack.workers:
        worker.start()
    await asyncio.gather(*(worker.wait_healthy() for worker in stack.workers))
    all_up = time.time()
    inbox = await wait_processed(ledger, deliveries, timeout=size(120, 900))
    lost = sum(1 for d in deliveries if d.accepted and d.event_id not in inbox)
    count, last = await ledger.processed_since(inbox, all_up)
    return (count / (last - all_up) if last > all_up else 0.0), lost


async def test_three_workers_and_two_ingresses_keep_every_guarantee(scenario: Scenario) -> None:
    stack, control, ledger, backend, tag, needles = scenario
    events = size(600, 6000)
    key = stack.config.credentials.webhook_key
    prepared = await shop(stack, plan(f"{tag}p", size(24, 300)))
    targets = [(p.execution_id, p.reference) for p in prepared if p.execution_id]
    single, scaled, live = (deliveries_for(key, targets, events) for _ in range(3))
    needles["signature"].update(d.signature for d in single + scaled + live)

    one_worker_rate, lost_single = await drain_rate(stack, ledger, single)
    await asyncio.gather(stack.add_ingress(), stack.add_worker(), stack.add_worker())
    three_worker_rate, lost_scaled = await drain_rate(stack, ledger, scaled)

    load = asyncio.create_task(
        steady_load(stack.ingress_urls, live, rate=size(100, 300), max_seconds=600)
    )
    placed = await shop(stack, plan(f"{tag}s", size(24, 240)))
    await load
    unanswered = await redeliver_until_accepted(stack.ingress_urls, live, max_seconds=60)
    inbox = await wait_processed(ledger, live, timeout=size(120, 900))
    lost_live = sum(1 for d in live if d.accepted and d.event_id not in inbox)
    verdict = await Judge(control, ledger, backend).settle(
        tag, expected_orders=len(prepared) + len(placed), timeout=180
    )

    figures = Figures("s8 scale-out")
    figures["events_per_drain"] = events
    figures["one_worker_events_per_s"] = one_worker_rate
    figures["three_workers_events_per_s"] = three_worker_rate
    figures["speed_up"] = three_worker_rate / one_worker_rate if one_worker_rate else 0.0
    figures["ingresses"] = len(stack.ingresses)
    figures["workers"] = len(stack.workers)
    figures["lost"] = lost_single + lost_scaled + lost_live
    figures["never_accepted"] = len(unanswered)
    figures.values.update(verdict.summary())
    figures.print(stack.config.run_dir)

    assert lost_single == lost_scaled == lost_live == 0
    assert unanswered == []
    assert verdict.ok, verdict
    stack.check_alive()
