"""The sweeper repairs orders whose webhook never came, once, whatever the number of replicas."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sandbox.control_client import SandboxHandle
from shared.db.models import Order, OutboxMessage
from shared.errors import ConfigError
from tests.ops.shop import APPROVE, CHALLENGE, Shop, make_stuck, order_status, transitions_of
from tests.settings import Settings
from tests.waiting import sample, wait_until
from worker.abandon import ABANDONED, UNCONFIRMED
from worker.deps import Deps
from worker.sweeper import run_sweeper, sweep_once


async def test_sweeper_repairs_an_order_whose_webhook_the_sandbox_dropped(
    ops_deps: Deps, shop: Shop, sandbox: SandboxHandle, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference, execution_id = await shop.pay(APPROVE)
    deliveries = await sandbox.deliveries(execution_id=execution_id)
    assert deliveries
    assert {d["status"] for d in deliveries} == {"dropped"}
    await make_stuck(sessions, [reference])
    repairs = sample("recon_sweeper_repairs_total", to_status="paid")

    result = await sweep_once(ops_deps)

    assert [c.reference for c in result.claimed] == [reference]
    assert result.repaired == {reference: "paid"}
    assert await order_status(sessions, reference) == "paid"
    assert await transitions_of(sessions, reference) == [("authorizing", "paid", "sweep")]
    assert sample("recon_sweeper_repairs_total", to_status="paid") == repairs + 1


async def test_sweeper_leaves_recent_orders_alone(
    ops_deps: Deps, shop: Shop, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference, _ = await shop.pay(APPROVE)

    result = await sweep_once(ops_deps)

    assert reference not in {c.reference for c in result.claimed}
    assert await order_status(sessions, reference) == "authorizing"


async def test_two_sweepers_at_once_claim_and_poll_each_order_once(
    ops_deps: Deps, shop: Shop, sessions: async_sessionmaker[AsyncSession]
) -> None:
    references = [(await shop.pay(APPROVE))[0] for _ in range(6)]
    await make_stuck(sessions, references)
    replica = dataclasses.replace(
        ops_deps, settings=ops_deps.settings.model_copy(update={"sweeper_batch_size": 3})
    )
    polls = sample("recon_payrails_requests_total", endpoint="get_execution", status="200")

    first, second = await asyncio.gather(sweep_once(replica), sweep_once(replica))

    claimed_first = {c.reference for c in first.claimed}
    claimed_second = {c.reference for c in second.claimed}
    assert claimed_first.isdisjoint(claimed_second)
    assert claimed_first | claimed_second == set(references)
    after = sample("recon_payrails_requests_total", endpoint="get_execution", status="200")
    assert after - polls == len(references)
    for reference in references:
        assert await transitions_of(sessions, reference) == [("authorizing", "paid", "sweep")]


async def test_an_unanswered_challenge_stays_until_payrails_reports_its_end(
    ops_deps: Deps, shop: Shop, sandbox: SandboxHandle, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The sweeper never guesses: a challenge stays pending until Payrails reports its end."""
    reference, execution_id = await shop.pay(CHALLENGE, status="action_required")
    await make_stuck(sessions, [reference])

    still_pending = await sweep_once(ops_deps)
    await sandbox.answer_challenge(execution_id, complete=False)
    await ops_deps.payrails.get_execution(execution_id, wait_while=["authorizePending"])
    await make_stuck(sessions, [reference])
    ended = await sweep_once(ops_deps)

    assert [c.reference for c in still_pending.claimed] == [reference]
    assert still_pending.repaired == {}
    assert ended.repaired == {reference: "payment_failed"}
    assert await transitions_of(sessions, reference) == [
        ("action_required", "payment_failed", "sweep")
    ]


async def test_a_challenge_left_past_its_expiry_ends_as_payrails_reports(
    ops_deps: Deps, shop: Shop, sandbox: SandboxHandle, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await sandbox.set_config(challenge_expiry_seconds=0.2)
    reference, execution_id = await shop.pay(CHALLENGE, status="action_required")
    expired = await ops_deps.payrails.get_execution(execution_id, wait_while=["authorizePending"])
    await make_stuck(sessions, [reference])

    result = await sweep_once(ops_deps)

    assert expired.operation_result == "AuthenticationRequired"
    assert result.repaired == {reference: "payment_failed"}
    assert await transitions_of(sessions, reference) == [
        ("action_required", "payment_failed", "sweep")
    ]


async def test_one_failing_order_does_not_stop_the_pass(
    ops_deps: Deps, shop: Shop, sessions: async_sessionmaker[AsyncSession]
) -> None:
    good, _ = await shop.pay(APPROVE)
    broken, _ = await shop.pay(APPROVE)
    async with sessions.begin() as session:
        await session.execute(
            update(Order).where(Order.reference == broken).values(execution_id="exec_missing")
        )
    await make_stuck(sessions, [good, broken])

    result = await sweep_once(ops_deps)

    assert result.failed == (broken,)
    assert result.repaired == {good: "paid"}


async def test_run_sweeper_sweeps_every_interval_until_stopped(
    ops_deps: Deps, shop: Shop, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference, _ = await shop.pay(APPROVE)
    await make_stuck(sessions, [reference])
    fast = dataclasses.replace(
        ops_deps, settings=ops_deps.settings.model_copy(update={"sweeper_interval_seconds": 0.1})
    )
    runs = sample("recon_sweeper_runs_total", outcome="ok")
    stop = asyncio.Event()
    task = asyncio.create_task(run_sweeper(fast, stop))

    await wait_until(lambda: sample("recon_sweeper_runs_total", outcome="ok") >= runs + 2, 10)
    stop.set()
    await asyncio.wait_for(task, timeout=5)

    assert await order_status(sessions, reference) == "paid"


async def test_an_order_left_created_past_the_threshold_fails_as_abandoned(
    ops_deps: Deps, shop: Shop, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference, _ = await shop.unpaid("created", execution=False)
    await make_stuck(sessions, [reference])

    result = await sweep_once(ops_deps)

    assert result.abandoned == (reference,)
    assert await order_status(sessions, reference) == "payment_failed"
    assert await transitions_of(sessions, reference) == [("created", "payment_failed", "sweep")]
    async with sessions() as session:
        order = await session.scalar(select(Order).where(Order.reference == reference))
        assert order is not None
        assert order.failure_reason == ABANDONED
        keys = await session.scalars(
            select(OutboxMessage.routing_key).where(OutboxMessage.order_id == order.id)
        )
        assert list(keys) == ["order.payment_failed"]


async def test_a_recent_created_order_is_left_alone(
    ops_deps: Deps, shop: Shop, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference, _ = await shop.unpaid("created", execution=False)

    result = await sweep_once(ops_deps)

    assert reference not in result.abandoned
    assert await order_status(sessions, reference) == "created"


async def test_an_authorize_payrails_never_saw_goes_to_review_after_three_thresholds(
    ops_deps: Deps, shop: Shop, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference, _ = await shop.unpaid("authorizing")
    await make_stuck(sessions, [reference], opened=4)

    result = await sweep_once(ops_deps)

    assert result.repaired == {reference: "needs_review"}
    assert await transitions_of(sessions, reference) == [("authorizing", "needs_review", "sweep")]
    async with sessions() as session:
        reason = await session.scalar(
            select(Order.failure_reason).where(Order.reference == reference)
        )
    assert reason == UNCONFIRMED


async def test_an_authorize_payrails_never_saw_is_re_polled_before_three_thresholds(
    ops_deps: Deps, shop: Shop, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference, _ = await shop.unpaid("authorizing")
    await make_stuck(sessions, [reference], opened=2)

    result = await sweep_once(ops_deps)

    assert [c.reference for c in result.claimed] == [reference]
    assert await order_status(sessions, reference) == "authorizing"


def test_sweeper_settings_are_read_from_the_environment(base_env: dict[str, str]) -> None:
    settings = Settings.from_env(
        {
            **base_env,
            "SWEEPER_INTERVAL_SECONDS": "12.5",
            "SWEEPER_STUCK_AFTER_SECONDS": "600",
            "SWEEPER_BATCH_SIZE": "7",
        }
    )

    assert settings.sweeper_interval_seconds == 12.5
    assert settings.sweeper_stuck_after_seconds == 600.0
    assert settings.sweeper_batch_size == 7


def test_a_stuck_threshold_below_one_second_is_refused(base_env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="SWEEPER_STUCK_AFTER_SECONDS"):
        Settings.from_env({**base_env, "SWEEPER_STUCK_AFTER_SECONDS": "0.5"})
