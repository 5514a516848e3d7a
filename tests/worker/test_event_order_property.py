"""Property: any ordering, duplication and timing of an execution's webhooks ends in its state."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.state_machine import Observation
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
)
from worker.deps import Deps

# (card, how the shopper answers the challenge: None when there is none)
CASES = [
    (FRICTIONLESS, None),
    (DECLINE, None),
    (UNKNOWN, None),
    (CHALLENGE, True),
    (CHALLENGE, False),
    (CASCADE, True),
]


async def publish_all(broker: QueueDriver, bodies: list[dict[str, Any]], order: list[int]) -> None:
    for index in order:
        await broker.publish_event(bodies[index])


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_any_order_and_duplication_of_events_ends_in_the_sandbox_state(
    data: st.DataObject,
    shop: Shop,
    sandbox_deps: Deps,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Events race the sandbox's progress and two consumers race each other on the row lock."""
    card, complete = data.draw(st.sampled_from(CASES), label="case")
    before = total_processed()
    published = 0
    async with running_worker(sandbox_deps), running_worker(sandbox_deps, relay=False):
        reference, execution_id = await shop.pay(card)
        bodies = await shop.bodies(execution_id, 1)
        if complete is not None:
            # Copies of the pending event go out while the challenge is still unanswered.
            early = data.draw(st.integers(0, 2), label="early copies")
            await publish_all(broker, bodies, [0] * early)
            published += early
            if data.draw(st.booleans(), label="answer after they are processed"):
                await wait_until(processed_since(before, published))
            await shop.sandbox.answer_challenge(execution_id, complete=complete)
            bodies = await shop.bodies(execution_id, 2)
        extra = data.draw(st.lists(st.sampled_from(range(len(bodies))), max_size=4), label="copies")
        sequence = data.draw(st.permutations([*range(len(bodies)), *extra]), label="order")
        await publish_all(broker, bodies, sequence)
        published += len(sequence)
        await wait_until(processed_since(before, published))
        messages = await broker.settled_messages_for(sessions, {reference})

    truth = Observation.from_execution(await shop.payrails.get_execution(execution_id)).status
    assert await order_status(sessions, reference) == truth.value
    keys = [m["_routing_key"] for m in messages]
    assert len(keys) == len(set(keys))
    assert keys[-1] == f"order.{truth.value}"
