"""Scenario 13: the PostgreSQL primary dies under load and its streaming standby is promoted.

The stack (webhook ingress x2, checkout, worker x2, sandbox) reaches the pair through one
multi-host URL with ``target_session_attrs=read-write``. Mid-load the primary's processes are
killed (``kill -9``); after a pause standing for failure detection, ``pg_ctl promote`` makes the
standby the primary. No process of ours is restarted: each must find the new primary itself.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.cluster.pg_replica import PgReplicaPair
from tests.e2e.conftest import Scenario
from tests.e2e.counting import Figures, Ledger, wait_until
from tests.e2e.drivers import redeliver_until_accepted, steady_load
from tests.e2e.flows import Judge, plan, shop, signed_deliveries, wait_processed
from tests.e2e.pg_failover import dead_letters, doubled_transitions
from tests.e2e.sizes import size

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(size(300, 3000))]

RECOVERY_BOUND_SECONDS = 90.0  # generous: "processing resumes at all", not a speed claim


async def test_postgres_failover_loses_no_order_and_applies_no_transition_twice(
    replica_scenario: Scenario, pg_replica: PgReplicaPair
) -> None:
    stack, control, ledger, backend, tag, needles = replica_scenario
    rate, seconds = size(20, 100), size(10, 60)
    placed = await shop(stack, plan(tag, size(12, 60)))
    deliveries = signed_deliveries(stack, placed, rate * seconds, needles["signature"])
    during = plan(f"{tag}d", size(6, 30))
    dead_before = await dead_letters(stack)
    starts = stack.starts()

    load = asyncio.create_task(
        steady_load(stack.ingress_urls, deliveries, rate=rate, max_seconds=seconds)
    )
    await asyncio.sleep(seconds * 0.3)
    shoppers = asyncio.create_task(shop(stack, during, concurrency=6))
    await asyncio.sleep(0.5)  # some of those orders are on their way when the primary dies
    killed_wall = time.time()
    pg_replica.kill_primary()
    await asyncio.sleep(size(3, 10))  # what an operator or Patroni takes to declare it dead
    promote_s = await asyncio.to_thread(pg_replica.promote_standby)
    promoted_wall = time.time()
    resumed = await wait_until(
        lambda: _processed_since(ledger, promoted_wall),
        timeout=RECOVERY_BOUND_SECONDS,
        interval=0.2,
    )
    first_processed = await ledger.first_processed_after(promoted_wall)
    await stack.wait_ready(timeout=RECOVERY_BOUND_SECONDS)
    ready_wall = time.time()
    result = await load
    placed_during = await shoppers
    unanswered = await redeliver_until_accepted(stack.ingress_urls, deliveries, max_seconds=60)
    inbox = await wait_processed(ledger, deliveries, timeout=size(90, 300))
    everyone = placed + placed_during
    verdict = await Judge(control, ledger, backend).settle(
        tag, expected_orders=len(everyone), timeout=120
    )

    rows = await ledger.orders(tag)
    lost_orders = [p.reference for p in everyone if p.reference not in rows]
    lost_events = [d.event_id for d in deliveries if d.accepted and d.event_id not in inbox]
    doubled = await doubled_transitions(ledger, tag)
    dead_lettered = await dead_letters(stack) - dead_before
    figures = Figures("s13 postgres failover")
    figures["sent"] = result.sent
    figures["first_pass_statuses"] = dict(sorted(result.by_status.items()))
    figures["failover_s"] = promoted_wall - killed_wall  # primary killed -> standby promoted
    figures["promote_s"] = promote_s
    figures["recovery_s"] = (first_processed - promoted_wall) if first_processed else -1.0
    figures["all_ready_s"] = ready_wall - promoted_wall
    figures["orders_during_failover"] = len(placed_during)
    figures["orders_lost"] = len(lost_orders)
    figures["events_lost"] = len(lost_events)
    figures["transitions_applied_twice"] = len(doubled)
    figures["dead_lettered"] = dead_lettered
    figures["never_accepted"] = len(unanswered)
    figures["restarts"] = sum(stack.starts().values()) - sum(starts.values())
    figures.values.update(verdict.summary())
    figures.print(stack.config.run_dir)

    assert resumed, f"no event processed within {RECOVERY_BOUND_SECONDS}s of the promotion"
    assert lost_orders == []
    assert lost_events == []
    assert doubled == []
    assert dead_lettered == 0
    assert unanswered == []
    assert verdict.ok, verdict
    await stack.assert_rode_it_out(starts)


async def _processed_since(ledger: Ledger, wall: float) -> bool:
    return await ledger.first_processed_after(wall) is not None
