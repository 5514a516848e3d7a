"""Whole flows: sandbox -> webhooks -> events consumer -> outbox relay -> a queue on ``orders``."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.waiting import wait_until
from tests.worker.conftest import (
    CASCADE,
    CHALLENGE,
    DECLINE,
    FRICTIONLESS,
    UNKNOWN,
    QueueDriver,
    Shop,
    order_status,
    processed_since,
    running_worker,
    total_processed,
    transitions_of,
)
from worker.deps import Deps


async def reaches(sessions: async_sessionmaker[AsyncSession], reference: str, status: str) -> None:
    async def there() -> bool:
        return await order_status(sessions, reference) == status

    await wait_until(there)


@pytest.mark.usefixtures("webhook_ingress")
@pytest.mark.parametrize(
    ("card", "final"),
    [
        (FRICTIONLESS, "paid"),
        (DECLINE, "payment_failed"),
        (UNKNOWN, "needs_review"),
        (CASCADE, "action_required"),
    ],
    ids=["frictionless", "decline", "unknown", "cascade-challenge"],
)
async def test_flow_reaches_its_state_with_exactly_one_message(
    card: str,
    final: str,
    shop: Shop,
    sandbox_deps: Deps,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with running_worker(sandbox_deps):
        reference, _ = await shop.pay(card)
        await reaches(sessions, reference, final)
        messages = await broker.settled_messages_for(sessions, {reference})

    assert [m["_routing_key"] for m in messages] == [f"order.{final}"]
    [message] = messages
    assert message["status"] == final
    assert message["orderReference"] == reference
    assert message["amount"] == {"value": "12.50", "currency": "EUR"}


@pytest.mark.usefixtures("webhook_ingress")
async def test_three_d_secure_announces_the_challenge_url_then_paid(
    shop: Shop,
    sandbox_deps: Deps,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with running_worker(sandbox_deps):
        reference, execution_id = await shop.pay(CHALLENGE)
        await reaches(sessions, reference, "action_required")
        [challenge] = await broker.messages_for({reference}, 1)
        await shop.sandbox.answer_challenge(execution_id, complete=True)
        await reaches(sessions, reference, "paid")
        rest = await broker.settled_messages_for(sessions, {reference})

    assert challenge["_routing_key"] == "order.action_required"
    assert challenge["redirectUrl"].endswith(f"/public/3ds/{execution_id}")
    assert [m["_routing_key"] for m in rest] == ["order.paid"]


async def test_every_event_delivered_three_times_yields_one_transition_and_one_message_each(
    shop: Shop,
    sandbox_deps: Deps,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference, execution_id = await shop.pay(CHALLENGE)
    [pending] = await shop.bodies(execution_id, 1)
    before = total_processed()

    async with running_worker(sandbox_deps):
        for body in (pending, pending, pending):
            await broker.publish_event(body)
        await wait_until(processed_since(before, 3))
        await shop.sandbox.answer_challenge(execution_id, complete=True)
        _, completed = await shop.bodies(execution_id, 2)
        for body in (completed, completed, completed):
            await broker.publish_event(body)
        await wait_until(processed_since(before, 6))
        messages = await broker.settled_messages_for(sessions, {reference})

    transitions = [(t.from_status, t.to_status) for t in await transitions_of(sessions, reference)]
    assert transitions == [("authorizing", "action_required"), ("action_required", "paid")]
    assert [m["_routing_key"] for m in messages] == ["order.action_required", "order.paid"]


async def test_completed_before_pending_still_ends_paid(
    shop: Shop,
    sandbox_deps: Deps,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference, execution_id = await shop.pay(CHALLENGE)
    [pending] = await shop.bodies(execution_id, 1)
    await shop.sandbox.answer_challenge(execution_id, complete=True)
    _, completed = await shop.bodies(execution_id, 2)
    before = total_processed()

    async with running_worker(sandbox_deps):
        await broker.publish_event(completed)
        await broker.publish_event(pending)

        await wait_until(processed_since(before, 2))
        messages = await broker.settled_messages_for(sessions, {reference})

    assert await order_status(sessions, reference) == "paid"
    assert [m["_routing_key"] for m in messages] == ["order.paid"]
