"""Scenario 4: Payrails answers 5xx, times out and rate-limits on re-polls and on authorize."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Scenario
from tests.e2e.counting import Figures
from tests.e2e.flows import Judge, plan, shop
from tests.e2e.sizes import size

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(size(300, 3000))]

FLAKY = {
    "error_rate": 0.2,  # 503
    "hang_rate": 0.1,  # held past the client's timeout, write not done: the 10 % timeouts
    "hang_seconds": 5,
    "drop_response_rate": 0.05,  # write done, answer lost: the retry must not repeat it
    "rate_limit_rate": 0.05,  # 429 with Retry-After
    "retry_after_seconds": 0.5,
}


async def test_payrails_faults_reconcile_every_order_and_authorize_once(scenario: Scenario) -> None:
    stack, control, ledger, backend, tag, _ = scenario
    await control.set_faults({"endpoints": {"get_execution": FLAKY, "authorize": FLAKY}})
    placed = await shop(stack, plan(tag, size(24, 300)), concurrency=12)
    verdict = await Judge(control, ledger, backend).settle(
        tag, expected_orders=len(placed), timeout=size(120, 600)
    )
    stats = await control.stats()
    await control.clear_faults()

    executions = {p.execution_id for p in placed if p.execution_id}
    authorizes = {e: n for e, n in stats["authorizesExecuted"].items() if e in executions}
    twice = {e: n for e, n in authorizes.items() if n > 1}
    attempts = {e: n for e, n in stats["authorizeAttempts"].items() if e in executions}
    attempted_again = {e: n for e, n in attempts.items() if n > 1}
    figures = Figures("s4 payrails faults")
    figures["faults_injected"] = sum(stats["faultsInjected"].values())
    figures["faults_by_kind"] = stats["faultsInjected"]
    figures["authorized_executions"] = len(authorizes)
    figures["authorized_twice"] = len(twice)
    figures["attempted_twice"] = len(attempted_again)  # a second key, even if refused
    figures.values.update(verdict.summary())
    figures.print(stack.config.run_dir)

    assert twice == {}
    assert attempted_again == {}
    assert set(authorizes) == executions, "every order is authorized exactly once"
    assert verdict.ok, verdict
    stack.check_alive()
