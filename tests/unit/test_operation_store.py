"""Payment operations in PostgreSQL: stored with their key before any call, under the order lock."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from alembic import command
from sqlalchemy import insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.migrate import alembic_config, upgrade
from shared.db.models import Order, PaymentOperation, table_of
from shared.money import Money
from shared.money_requests import (
    CaptureNotManual,
    ExceedsAuthorized,
    MoneyRuleError,
    NotAuthorized,
    OutcomeUnknown,
)
from shared.operation_states import CaptureMode, OperationKind, OperationState
from shared.operation_store import (
    CommandReused,
    OrderNotFound,
    Outcome,
    Requested,
    apply_operation_outcome,
    request_operation,
)
from tests.conftest import ServiceUrls, admin_sql, drop_database
from tests.paid_orders import operations_of
from tests.unit.test_schema import order_row

CAPTURE, REFUND, CANCEL = OperationKind.CAPTURE, OperationKind.REFUND, OperationKind.CANCEL


def eur(value: str) -> Money:
    return Money(Decimal(value), "EUR")


async def new_order(
    sessions: async_sessionmaker[AsyncSession],
    *,
    status: str = "paid",
    capture_mode: str = "manual",
    amount: str = "100.00",
) -> str:
    """An order of ``amount`` EUR in ``status``; its reference."""
    row = order_row(
        status=status,
        capture_mode=capture_mode,
        amount_value=Decimal(amount),
        execution_id=f"exec-{uuid.uuid4().hex}",
    )
    async with sessions.begin() as session:
        await session.execute(insert(table_of(Order)), [row])
    return str(row["reference"])


async def request(
    sessions: async_sessionmaker[AsyncSession], reference: str, kind: OperationKind, **kw: Any
) -> Requested:
    async with sessions.begin() as session:
        return await request_operation(session, reference=reference, kind=kind, **kw)


async def report(
    sessions: async_sessionmaker[AsyncSession], operation_id: int, state: OperationState, **kw: Any
) -> Outcome | None:
    async with sessions.begin() as session:
        return await apply_operation_outcome(session, operation_id, state, **kw)


async def stored(sessions: async_sessionmaker[AsyncSession], reference: str) -> Order:
    async with sessions() as session:
        order = await session.scalar(select(Order).where(Order.reference == reference))
    assert order is not None
    return order


async def test_a_requested_operation_is_committed_with_a_uuid4_key_before_any_call(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference = await new_order(sessions)
    requested = await request(sessions, reference, CAPTURE, amount=eur("40.00"), final=False)
    assert requested.created
    [row] = await operations_of(sessions, reference)
    assert row.id == requested.row.id
    assert row.idempotency_key.version == 4
    assert (row.kind, row.state, row.amount_value, row.currency, row.final) == (
        CAPTURE,
        OperationState.REQUESTED,
        Decimal("40.00"),
        "EUR",
        False,
    )
    assert row.payrails_execution_id == (await stored(sessions, reference)).execution_id


async def test_a_repeated_command_returns_the_stored_operation_and_its_key(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference = await new_order(sessions)
    command_id = f"cmd-{uuid.uuid4().hex}"
    first = await request(sessions, reference, CAPTURE, amount=eur("40.00"), command_id=command_id)
    again = await request(sessions, reference, CAPTURE, amount=eur("40.00"), command_id=command_id)
    assert (first.created, again.created) == (True, False)
    assert again.row.id == first.row.id
    assert again.row.idempotency_key == first.row.idempotency_key
    assert len(await operations_of(sessions, reference)) == 1


async def test_a_command_id_used_for_another_operation_is_refused(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference = await new_order(sessions)
    command_id = f"cmd-{uuid.uuid4().hex}"
    await request(sessions, reference, CAPTURE, amount=eur("40.00"), command_id=command_id)
    with pytest.raises(CommandReused):
        await request(sessions, reference, CANCEL, command_id=command_id)
    with pytest.raises(CommandReused):
        await request(sessions, reference, CAPTURE, amount=eur("41.00"), command_id=command_id)
    other = await new_order(sessions)
    with pytest.raises(CommandReused):
        await request(sessions, other, CAPTURE, amount=eur("40.00"), command_id=command_id)


async def test_a_request_that_breaks_an_invariant_stores_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference = await new_order(sessions)
    with pytest.raises(ExceedsAuthorized):
        await request(sessions, reference, CAPTURE, amount=eur("100.01"))
    assert await operations_of(sessions, reference) == []


@pytest.mark.parametrize(
    ("status", "capture_mode", "error"),
    [
        ("authorizing", "manual", NotAuthorized),
        ("payment_failed", "manual", NotAuthorized),
        ("paid", "instant", CaptureNotManual),
    ],
)
async def test_only_a_paid_order_on_manual_capture_can_be_captured(
    sessions: async_sessionmaker[AsyncSession],
    status: str,
    capture_mode: str,
    error: type[MoneyRuleError],
) -> None:
    reference = await new_order(sessions, status=status, capture_mode=capture_mode)
    with pytest.raises(error):
        await request(sessions, reference, CAPTURE)


async def test_an_unknown_order_is_not_found(sessions: async_sessionmaker[AsyncSession]) -> None:
    with pytest.raises(OrderNotFound):
        await request(sessions, f"missing-{uuid.uuid4().hex}", CAPTURE)


async def test_concurrent_captures_never_exceed_the_authorization_together(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The order's row lock serialises the checks: of two 60.00 captures on 100.00, one fits."""
    reference = await new_order(sessions)
    results = await asyncio.gather(
        *(request(sessions, reference, CAPTURE, amount=eur("60.00"), final=False) for _ in "ab"),
        return_exceptions=True,
    )
    assert sorted(type(result).__name__ for result in results) == [
        "ExceedsAuthorized",
        "Requested",
    ]
    assert len(await operations_of(sessions, reference)) == 1


async def test_reports_move_the_operation_forward_and_count_its_amount_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference = await new_order(sessions)
    capture = (await request(sessions, reference, CAPTURE, amount=eur("40.00"), final=False)).row
    await report(sessions, capture.id, OperationState.IN_FLIGHT, action_id="act-capture-1")
    for _ in range(3):
        await report(sessions, capture.id, OperationState.SUCCEEDED, result_code="Success")
    await report(sessions, capture.id, OperationState.IN_FLIGHT)  # a stale one, late
    refund = (await request(sessions, reference, REFUND, amount=eur("15.00"))).row
    await report(sessions, refund.id, OperationState.SUCCEEDED)
    await report(sessions, refund.id, OperationState.SUCCEEDED)
    order = await stored(sessions, reference)
    assert (order.captured_value, order.refunded_value) == (Decimal("40.00"), Decimal("15.00"))
    first, second = await operations_of(sessions, reference)
    assert (first.state, first.result_code, first.payrails_action_id) == (
        OperationState.SUCCEEDED,
        "Success",
        "act-capture-1",
    )
    assert first.completed_at is not None
    assert second.state is OperationState.SUCCEEDED


async def test_a_failed_capture_counts_nothing_and_a_later_success_report_is_a_conflict(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference = await new_order(sessions)
    capture = (await request(sessions, reference, CAPTURE)).row
    await report(sessions, capture.id, OperationState.FAILED, result_code="GenericRejection")
    outcome = await report(sessions, capture.id, OperationState.SUCCEEDED)
    assert outcome is not None
    assert outcome.applied.value == "conflict"
    assert (await stored(sessions, reference)).captured_value == 0


async def test_an_unknown_capture_blocks_the_next_capture_until_review(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference = await new_order(sessions)
    capture = (await request(sessions, reference, CAPTURE, amount=eur("10.00"), final=False)).row
    await report(sessions, capture.id, OperationState.UNKNOWN, result_code="ProviderTimeout")
    with pytest.raises(OutcomeUnknown):
        await request(sessions, reference, CAPTURE, amount=eur("10.00"))


async def test_a_reported_amount_other_than_the_operations_is_flagged_not_counted(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference = await new_order(sessions)
    capture = (await request(sessions, reference, CAPTURE, amount=eur("40.00"))).row
    outcome = await report(sessions, capture.id, OperationState.SUCCEEDED, reported=eur("90.00"))
    assert outcome is not None
    assert outcome.applied.value == "review"
    [row] = await operations_of(sessions, reference)
    assert row.state is OperationState.UNKNOWN
    assert row.reason == "Payrails reports 90.00 EUR for an operation of 40.00 EUR"
    assert (await stored(sessions, reference)).captured_value == 0


async def test_a_report_on_an_operation_that_does_not_exist_is_none(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    assert await report(sessions, -1, OperationState.SUCCEEDED) is None


# --- what the database itself refuses -----------------------------------------------------------
@pytest.mark.parametrize("digits", ["123", "12a4", "", "\u0661\u0662\u0663\u0664"])
async def test_the_orders_table_keeps_only_four_ascii_card_digits(
    sessions: async_sessionmaker[AsyncSession], digits: str
) -> None:
    with pytest.raises(IntegrityError, match="ck_orders_card_last4_four_digits"):
        async with sessions.begin() as session:
            await session.execute(insert(table_of(Order)), [order_row(card_last4=digits)])


async def test_the_orders_table_refuses_more_than_four_card_digits(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(DBAPIError, match="value too long"):
        async with sessions.begin() as session:
            await session.execute(insert(table_of(Order)), [order_row(card_last4="12345")])


@pytest.mark.parametrize(
    ("overrides", "constraint"),
    [
        ({"kind": "payout", "final": None}, "ck_payment_operations_kind"),
        ({"state": "done"}, "ck_payment_operations_state"),
        ({"amount_value": Decimal(0)}, "ck_payment_operations_amount_positive"),
        ({"currency": "eur"}, "ck_payment_operations_currency_iso_4217"),
        ({"final": None}, "ck_payment_operations_final_only_on_capture"),
        ({"kind": "refund"}, "ck_payment_operations_final_only_on_capture"),
    ],
)
async def test_the_operations_table_refuses_an_unknown_kind_state_or_amount(
    sessions: async_sessionmaker[AsyncSession], overrides: dict[str, Any], constraint: str
) -> None:
    reference = await new_order(sessions)
    order = await stored(sessions, reference)
    row = {
        "order_id": order.id,
        "kind": "capture",
        "state": "requested",
        "amount_value": Decimal("1.00"),
        "currency": "EUR",
        "final": True,
        "idempotency_key": uuid.uuid4(),
        **overrides,
    }
    with pytest.raises(IntegrityError, match=constraint):
        async with sessions.begin() as session:
            await session.execute(insert(table_of(PaymentOperation)), [row])


async def test_the_orders_totals_stay_within_the_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference = await new_order(sessions)
    for statement, constraint in [
        ("captured_value = 100.01", "ck_orders_captured_in_range"),
        ("refunded_value = 0.01", "ck_orders_refunded_in_range"),
        ("capture_mode = 'delayed'", "ck_orders_capture_mode"),
    ]:
        with pytest.raises(IntegrityError, match=constraint):
            async with sessions.begin() as session:
                await session.execute(
                    text(f"UPDATE orders SET {statement} WHERE reference = :r"), {"r": reference}
                )


async def test_an_existing_order_gets_instant_capture_and_zero_totals(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    row = order_row()
    async with sessions.begin() as session:
        await session.execute(insert(table_of(Order)), [row])
    order = await stored(sessions, str(row["reference"]))
    assert (order.capture_mode, order.captured_value, order.refunded_value) == (
        CaptureMode.INSTANT,
        0,
        0,
    )


@pytest.fixture
def scratch_database(service_urls: ServiceUrls) -> Iterator[str]:
    """An empty database of this test's own; its URL."""
    name = f"recon_migrate_{uuid.uuid4().hex[:8]}"
    admin_sql(service_urls, f'CREATE DATABASE "{name}"')
    url = service_urls.admin_database_url.rsplit("/", 1)[0] + f"/{name}"
    yield url
    admin_sql(service_urls, drop_database(name))


def test_the_operations_migration_downgrades_and_upgrades_again(scratch_database: str) -> None:
    upgrade(scratch_database)
    command.downgrade(alembic_config(scratch_database), "0004")
    upgrade(scratch_database)


@pytest.mark.parametrize(
    ("constraint", "members"),
    [
        ("ck_payment_operations_kind", set(OperationKind)),
        ("ck_payment_operations_state", set(OperationState)),
        ("ck_orders_capture_mode", set(CaptureMode)),
    ],
)
async def test_the_database_constraints_list_exactly_the_enums_members(
    sessions: async_sessionmaker[AsyncSession], constraint: str, members: set[str]
) -> None:
    async with sessions() as session:
        definition = await session.scalar(
            text("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = :name"),
            {"name": constraint},
        )
    assert definition is not None
    assert set(re.findall(r"'([^']*)'", definition)) == members
