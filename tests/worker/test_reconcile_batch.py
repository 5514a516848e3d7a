"""worker.events.reconcile_batch against the real database, with hand-made executions."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import InboxEntry, Order, OutboxMessage
from shared.events import WebhookEvent
from shared.payrails.models import Execution
from tests.worker.conftest import (
    insert_order,
    order_status,
    outbox_count,
    transitions_of,
    webhook_body,
)
from worker.events import Delivery, Outcome, parse_received_at, reconcile_batch


def execution(execution_id: str, reference: str, *codes: str, **extra: Any) -> Execution:
    statuses = [
        {"code": code, "time": f"2026-01-01T00:00:0{i}.000Z"} for i, code in enumerate(codes)
    ]
    return Execution.from_api(
        {"id": execution_id, "merchantReference": reference, "status": statuses, **extra}
    )


def delivery(event_name: str, execution_id: str, reference: str, ex: Execution | None) -> Delivery:
    body = webhook_body(event_name, execution_id, reference)
    event = WebhookEvent.from_body(json.dumps(body).encode())
    return Delivery(event, datetime.now(UTC), ex)


async def run(sessions: async_sessionmaker[AsyncSession], *deliveries: Delivery) -> list[Outcome]:
    async with sessions.begin() as session:
        results = await reconcile_batch(session, list(deliveries))
    return [r.outcome for r in results]


async def test_successful_execution_moves_order_to_paid_with_one_outbox_row(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    exec_id = str(uuid.uuid4())
    order = await insert_order(sessions, execution_id=exec_id)
    ex = execution(exec_id, order.reference, "created", "authorizeRequested", "authorizeSuccessful")

    outcomes = await run(
        sessions, delivery("executionActionCompleted", exec_id, order.reference, ex)
    )

    assert outcomes == [Outcome.RECONCILED]
    assert await order_status(sessions, order.reference) == "paid"
    assert await outbox_count(sessions, order.reference) == 1
    [transition] = await transitions_of(sessions, order.reference)
    assert (transition.from_status, transition.to_status, transition.cause) == (
        "authorizing",
        "paid",
        "webhook",
    )


async def test_same_event_twice_is_a_duplicate_the_second_time(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    exec_id = str(uuid.uuid4())
    order = await insert_order(sessions, execution_id=exec_id)
    ex = execution(exec_id, order.reference, "authorizeRequested", "authorizeSuccessful")
    first = delivery("executionActionCompleted", exec_id, order.reference, ex)

    assert await run(sessions, first, first) == [Outcome.RECONCILED, Outcome.DUPLICATE]
    assert await run(sessions, first) == [Outcome.DUPLICATE]
    assert len(await transitions_of(sessions, order.reference)) == 1


async def test_event_without_order_writes_nothing_so_its_retry_is_not_a_duplicate(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    exec_id = str(uuid.uuid4())
    reference = f"ord_{uuid.uuid4().hex[:12]}"
    ex = execution(exec_id, reference, "authorizeSuccessful")
    early = delivery("executionActionCompleted", exec_id, reference, ex)

    assert await run(sessions, early) == [Outcome.ORDER_NOT_FOUND]
    async with sessions() as session:
        assert await session.get(InboxEntry, early.event.event_id) is None

    await insert_order(sessions, execution_id=exec_id, reference=reference)
    assert await run(sessions, early) == [Outcome.RECONCILED]
    assert await order_status(sessions, reference) == "paid"


async def test_order_is_found_by_merchant_reference_when_execution_id_is_not_stored(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    exec_id = str(uuid.uuid4())
    order = await insert_order(sessions, execution_id=None)
    ex = execution(exec_id, order.reference, "authorizeFailed", operationResult="Declined")

    assert await run(
        sessions, delivery("executionActionCompleted", exec_id, order.reference, ex)
    ) == [Outcome.RECONCILED]
    assert await order_status(sessions, order.reference) == "payment_failed"


async def test_rolled_back_batch_leaves_no_inbox_row_behind(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    exec_id = str(uuid.uuid4())
    order = await insert_order(sessions, execution_id=exec_id)
    ex = execution(exec_id, order.reference, "authorizeSuccessful")
    item = delivery("executionActionCompleted", exec_id, order.reference, ex)

    async def reconcile_then_fail() -> None:
        async with sessions.begin() as session:
            await reconcile_batch(session, [item])
            raise RuntimeError("the connection dropped before COMMIT")

    with pytest.raises(RuntimeError):
        await reconcile_then_fail()

    assert await order_status(sessions, order.reference) == "authorizing"
    assert await run(sessions, item) == [Outcome.RECONCILED]


async def test_unreconciled_event_is_recorded_and_ignored(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    exec_id = str(uuid.uuid4())
    item = delivery("executionCreated", exec_id, "ord_x", None)

    assert await run(sessions, item) == [Outcome.IGNORED]
    async with sessions() as session:
        row = await session.get(InboxEntry, item.event.event_id)
    assert row is not None
    assert row.outcome == "ignored"


async def test_provider_timeout_goes_to_needs_review(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    exec_id = str(uuid.uuid4())
    order = await insert_order(sessions, execution_id=exec_id)
    ex = execution(
        exec_id,
        order.reference,
        "authorizeRequested",
        "authorizeFailed",
        payments=[{"status": "Unknown", "operationResult": "ProviderTimeout"}],
    )

    await run(sessions, delivery("executionActionCompleted", exec_id, order.reference, ex))

    assert await order_status(sessions, order.reference) == "needs_review"


async def test_older_observation_after_paid_changes_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    exec_id = str(uuid.uuid4())
    order = await insert_order(sessions, execution_id=exec_id)
    paid = execution(exec_id, order.reference, "authorizeSuccessful")
    pending = execution(
        exec_id, order.reference, "authorizePending", requiredAction={"href": "https://x/3ds"}
    )

    await run(
        sessions,
        delivery("executionActionCompleted", exec_id, order.reference, paid),
        delivery("executionActionPending", exec_id, order.reference, pending),
    )

    assert await order_status(sessions, order.reference) == "paid"
    assert await outbox_count(sessions, order.reference) == 1


async def test_received_at_header_parses_iso_and_epoch() -> None:
    assert parse_received_at("2026-01-01T00:00:00.000+00:00") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_received_at(0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_received_at("not a time") is None


async def test_reference_fallback_skips_an_order_bound_to_another_execution(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    order = await insert_order(sessions, execution_id=str(uuid.uuid4()))
    other = str(uuid.uuid4())
    ex = execution(other, order.reference, "authorizeSuccessful")

    outcomes = await run(sessions, delivery("executionActionCompleted", other, order.reference, ex))

    assert outcomes == [Outcome.ORDER_NOT_FOUND]
    assert await order_status(sessions, order.reference) == "authorizing"


async def test_execution_naming_another_reference_is_a_mismatch_and_writes_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    order = await insert_order(sessions, execution_id=None)
    exec_id = str(uuid.uuid4())
    ex = execution(exec_id, "someone-else", "authorizeSuccessful")
    item = delivery("executionActionCompleted", exec_id, order.reference, ex)

    assert await run(sessions, item) == [Outcome.EXECUTION_MISMATCH]
    assert await order_status(sessions, order.reference) == "authorizing"
    async with sessions() as session:
        assert await session.get(InboxEntry, item.event.event_id) is None
        stored = await session.get(Order, order.id)
    assert stored is not None
    assert stored.execution_id is None


async def test_order_bound_by_execution_id_rejects_an_execution_naming_another_reference(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    exec_id = str(uuid.uuid4())
    order = await insert_order(sessions, execution_id=exec_id)
    ex = execution(exec_id, "someone-else", "authorizeSuccessful")

    outcomes = await run(
        sessions, delivery("executionActionCompleted", exec_id, order.reference, ex)
    )

    assert outcomes == [Outcome.EXECUTION_MISMATCH]
    assert await order_status(sessions, order.reference) == "authorizing"


async def test_second_execution_for_a_reference_in_one_batch_is_a_mismatch(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    order = await insert_order(sessions, execution_id=None)
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    pending = execution(
        first, order.reference, "authorizePending", requiredAction={"href": "https://x/3ds"}
    )
    paid = execution(second, order.reference, "authorizeSuccessful")

    outcomes = await run(
        sessions,
        delivery("executionActionPending", first, order.reference, pending),
        delivery("executionActionCompleted", second, order.reference, paid),
    )

    assert outcomes == [Outcome.RECONCILED, Outcome.EXECUTION_MISMATCH]
    assert await order_status(sessions, order.reference) == "action_required"


async def test_order_matched_by_reference_learns_its_execution_id_and_its_message_carries_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    order = await insert_order(sessions, execution_id=None)
    exec_id = str(uuid.uuid4())
    ex = execution(exec_id, order.reference, "authorizeSuccessful")

    await run(sessions, delivery("executionActionCompleted", exec_id, order.reference, ex))

    async with sessions() as session:
        stored = await session.get(Order, order.id)
        body = await session.scalar(
            select(OutboxMessage.body).where(OutboxMessage.order_id == order.id)
        )
    assert stored is not None
    assert stored.execution_id == exec_id
    assert body is not None
    assert body["executionId"] == exec_id
