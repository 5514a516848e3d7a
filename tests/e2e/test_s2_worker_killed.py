"""Scenario 2: the worker is killed with SIGKILL every few seconds while events flow."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from tests.e2e.conftest import Scenario
from tests.e2e.counting import Figures
from tests.e2e.drivers import redeliver_until_accepted, steady_load
from tests.e2e.flows import Judge, plan, shop, signed_deliveries, wait_processed
from tests.e2e.harness import Stack
from tests.e2e.sizes import size

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(size(300, 3000))]


async def kill_repeatedly(stack: Stack, *, every: float, until: asyncio.Event) -> int:
    """kill -9 the worker every ``every`` seconds and start it again, as an orchestrator would."""
    kills = 0
    while not until.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(until.wait(), every)
        if until.is_set():
            break
        worker = stack.workers[0]
        await worker.kill()
        kills += 1
        worker.start()
        await worker.wait_healthy()
    return kills


async def test_worker_killed_repeatedly_loses_nothing_and_pays_once(scenario: Scenario) -> None:
    stack, control, ledger, backend, tag, needles = scenario
    events, orders = size(300, 10_000), size(24, 300)
    rate = size(40, 250)
    prepared = await shop(stack, plan(f"{tag}p", orders // 2))
    deliveries = signed_deliveries(stack, prepared, events, needles["signature"])

    done = asyncio.Event()
    killer = asyncio.create_task(kill_repeatedly(stack, every=size(2, 3), until=done))
    started = time.monotonic()
    try:
        load = asyncio.create_task(
            steady_load(stack.ingress_urls, deliveries, rate=rate, max_seconds=events / rate + 5)
        )
        placed_live = await shop(stack, plan(f"{tag}k", orders - orders // 2), concurrency=8)
        result = await load
        unanswered = await redeliver_until_accepted(stack.ingress_urls, deliveries, max_seconds=60)
        inbox = await wait_processed(ledger, deliveries, timeout=size(60, 900))
    finally:
        done.set()
        kills = await killer
    elapsed = time.monotonic() - started
    verdict = await Judge(control, ledger, backend).settle(
        tag, expected_orders=len(prepared) + len(placed_live), timeout=120
    )

    lost = [d.event_id for d in deliveries if d.accepted and d.event_id not in inbox]
    figures = Figures("s2 worker kill -9")
    figures["events"] = result.sent
    figures["kills"] = kills
    figures["lost"] = len(lost)
    figures["never_accepted"] = len(unanswered)
    figures["events_per_s"] = len(inbox) / elapsed if elapsed > 0 else 0.0
    figures.values.update(verdict.summary())
    figures.print(stack.config.run_dir)

    assert kills >= 2
    assert lost == []
    assert unanswered == []
    assert verdict.ok, verdict
    stack.check_alive()
