"""Property: any ordering and duplication of an execution's webhooks ends in the sandbox's state."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.state_machine import Observation
from tests.worker.conftest import (
    CASCADE,
    CHALLENGE,
    DECLINE,
    FRICTIONLESS,
    UNKNOWN,
    Broker,
    Shop,
    order_status,
    processed_since,
    running_worker,
    total_processed,
    wait_until,
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


async def events_of(shop: Shop, card: str, complete: bool | None) -> tuple[str, str, list[dict]]:
    """Run one payment in the sandbox to its end; its reference, execution id and webhooks."""
    reference, execution_id = await shop.pay(card)
    if complete is None:
        return reference, execution_id, await shop.bodies(execution_id, 1)
    await shop.bodies(execution_id, 1)
    await shop.sandbox.answer_challenge(execution_id, complete=complete)
    return reference, execution_id, await shop.bodies(execution_id, 2)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_any_order_and_duplication_of_events_ends_in_the_sandbox_state(
    data: st.DataObject,
    shop: Shop,
    sandbox_deps: Deps,
    broker: Broker,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    card, complete = data.draw(st.sampled_from(CASES), label="case")
    reference, execution_id, bodies = await events_of(shop, card, complete)
    extra = data.draw(st.lists(st.sampled_from(range(len(bodies))), max_size=4), label="copies")
    sequence = data.draw(st.permutations([*range(len(bodies)), *extra]), label="order")
    before = total_processed()

    async with running_worker(sandbox_deps):
        for index in sequence:
            await broker.publish_event(bodies[index])
        await wait_until(processed_since(before, len(sequence)))
        messages = await broker.settled_messages_for(sessions, {reference})

    truth = Observation.from_execution(await shop.payrails.get_execution(execution_id)).status
    assert await order_status(sessions, reference) == truth.value
    keys = [m["_routing_key"] for m in messages]
    assert len(keys) == len(set(keys))
    assert keys[-1] == f"order.{truth.value}"
