"""Manual-capture authorizations not captured in time are flagged once by the sweeper, with what
is left to capture, before the card scheme lets them expire."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import Order, OrderTransition, OutboxMessage, PaymentOperation
from shared.operation_states import CaptureMode, OperationKind, OperationState
from shared.order_store import utcnow
from tests.conftest import Output
from tests.paid_orders import insert_paid_order
from tests.waiting import sample
from tests.worker.test_asyncapi import check
from worker.capture_deadline import ROUTING_CAPTURE_DUE, flag_capture_due
from worker.deps import Deps
from worker.sweeper import sweep_once

DAY = 86400.0
WARNING = 6 * DAY


async def authorized_days_ago(
    sessions: async_sessionmaker[AsyncSession],
    days: float,
    *,
    capture_mode: CaptureMode = CaptureMode.MANUAL,
    captured: str | None = None,
) -> str:
    """A paid order whose move to paid was ``days`` ago; its reference."""
    reference = await insert_paid_order(sessions, capture_mode=capture_mode, captured=captured)
    async with sessions.begin() as session:
        order_id = await session.scalar(select(Order.id).where(Order.reference == reference))
        assert order_id is not None
        session.add(
            OrderTransition(
                order_id=order_id,
                from_status="authorizing",
                to_status="paid",
                cause="webhook",
                created_at=utcnow() - timedelta(days=days),
            )
        )
    return reference


async def add_operation(
    sessions: async_sessionmaker[AsyncSession],
    reference: str,
    kind: OperationKind,
    state: OperationState,
    amount: str = "100.00",
    final: bool | None = None,
) -> None:
    async with sessions.begin() as session:
        order_id = await session.scalar(select(Order.id).where(Order.reference == reference))
        assert order_id is not None
        session.add(
            PaymentOperation(
                order_id=order_id,
                kind=kind,
                state=state,
                amount_value=Decimal(amount),
                currency="EUR",
                final=final if kind is OperationKind.CAPTURE else None,
                idempotency_key=uuid.uuid4(),
            )
        )


async def capture_due_messages(
    sessions: async_sessionmaker[AsyncSession], reference: str
) -> list[dict[str, object]]:
    async with sessions() as session:
        rows = await session.scalars(
            select(OutboxMessage.body)
            .join(Order, Order.id == OutboxMessage.order_id)
            .where(Order.reference == reference, OutboxMessage.routing_key == ROUTING_CAPTURE_DUE)
        )
        return list(rows)


async def due_references(sessions: async_sessionmaker[AsyncSession]) -> set[str]:
    found = await flag_capture_due(sessions, warning_after=WARNING)
    assert sample("recon_authorizations_near_expiry") == len(found)
    return {due.reference for due in found}


async def test_an_authorization_uncaptured_past_the_warning_age_is_announced_and_logged_once(
    sessions: async_sessionmaker[AsyncSession], json_logs: Output
) -> None:
    reference = await authorized_days_ago(sessions, 6.5)

    first = await flag_capture_due(sessions, warning_after=WARNING)
    second = await flag_capture_due(sessions, warning_after=WARNING)

    mine = [due for due in (*first, *second) if due.reference == reference]
    assert [due.announced for due in mine] == [True, False]
    assert mine[0].uncaptured.format_value() == "100.00"
    messages = await capture_due_messages(sessions, reference)
    assert len(messages) == 1
    body = messages[0]
    assert check(body, "CaptureDueMessage") == []
    assert (body["uncaptured"], body["status"]) == ({"value": "100.00", "currency": "EUR"}, "paid")
    logged = [
        line
        for line in json_logs.lines()
        if line["event"] == "sweeper.capture_due" and line.get("order_reference") == reference
    ]
    assert len(logged) == 1
    assert logged[0]["level"] == "warning"


async def test_a_partly_captured_authorization_is_announced_with_what_is_left(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference = await authorized_days_ago(sessions, 7, captured="40.00")

    found = await flag_capture_due(sessions, warning_after=WARNING)

    [due] = [due for due in found if due.reference == reference]
    assert due.uncaptured.format_value() == "60.00"
    [body] = await capture_due_messages(sessions, reference)
    assert body["totals"] == {
        "currency": "EUR",
        "authorized": "100.00",
        "captured": "40.00",
        "refunded": "0.00",
    }


@pytest.mark.parametrize(
    ("days", "capture_mode", "operation"),
    [
        pytest.param(5, CaptureMode.MANUAL, None, id="younger-than-the-warning-age"),
        pytest.param(7, CaptureMode.INSTANT, None, id="instant-capture"),
        pytest.param(
            7,
            CaptureMode.MANUAL,
            (OperationKind.CAPTURE, OperationState.IN_FLIGHT, False),
            id="the-rest-being-captured",
        ),
        pytest.param(
            7,
            CaptureMode.MANUAL,
            (OperationKind.CAPTURE, OperationState.FAILED, True),
            id="only-a-failed-capture",
        ),
        pytest.param(
            7,
            CaptureMode.MANUAL,
            (OperationKind.CANCEL, OperationState.REQUESTED, None),
            id="a-cancel-under-way",
        ),
        pytest.param(
            7,
            CaptureMode.MANUAL,
            (OperationKind.CANCEL, OperationState.SUCCEEDED, None),
            id="cancelled",
        ),
    ],
)
async def test_which_authorizations_are_flagged(
    sessions: async_sessionmaker[AsyncSession],
    days: float,
    capture_mode: CaptureMode,
    operation: tuple[OperationKind, OperationState, bool | None] | None,
) -> None:
    reference = await authorized_days_ago(sessions, days, capture_mode=capture_mode)
    if operation is not None:
        kind, state, final = operation
        await add_operation(sessions, reference, kind, state, final=final)
    # Only a failed capture leaves the whole authorization to capture.
    expected = operation is not None and operation[1] is OperationState.FAILED

    assert (reference in await due_references(sessions)) is expected
    assert len(await capture_due_messages(sessions, reference)) == int(expected)


async def test_the_gauge_falls_once_the_rest_is_captured(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference = await authorized_days_ago(sessions, 6.5, captured="30.00")
    assert reference in await due_references(sessions)

    await add_operation(
        sessions, reference, OperationKind.CAPTURE, OperationState.SUCCEEDED, "70.00", final=True
    )

    assert reference not in await due_references(sessions)
    assert len(await capture_due_messages(sessions, reference)) == 1


async def test_a_sweeper_pass_flags_the_authorizations_near_expiry(
    sandbox_deps: Deps, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference = await authorized_days_ago(sessions, 6.5)

    result = await sweep_once(sandbox_deps)

    assert reference in {due.reference for due in result.capture_due}
    assert len(await capture_due_messages(sessions, reference)) == 1
