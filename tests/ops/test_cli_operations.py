"""``recon orders capture|cancel|refund|show`` and ``recon review`` of operations, against the
real database, broker and sandbox: an operator's operation takes the merchant API's path (stored,
then ``operation.execute`` for the worker), and a verdict on an unknown outcome is announced."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal

import pytest
from aio_pika.abc import AbstractRobustConnection
from click.testing import CliRunner
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import Order, OutboxMessage, PaymentOperation
from shared.money import Money
from shared.operation_states import CaptureMode, OperationKind, OperationState
from shared.operation_store import apply_operation_outcome, request_operation
from shared.state_machine import OrderStatus
from tests.ops.conftest import Invoke
from tests.ops.shop import APPROVE, Shop
from tests.paid_orders import operations_of
from tests.settings import Settings
from tests.worker.test_asyncapi import check
from worker.cli import cli
from worker.deps import Deps
from worker.operations import ExecuteCommand, ExecuteOutcome, execute_operation

EUR = "EUR"


async def paid_order(
    sessions: async_sessionmaker[AsyncSession],
    *,
    amount: str = "20.00",
    mode: CaptureMode = CaptureMode.MANUAL,
) -> str:
    """An order paid at ``amount`` (its authorization), in ``mode``; no operation yet."""
    reference = f"ops_{uuid.uuid4().hex[:16]}"
    async with sessions.begin() as session:
        session.add(
            Order(
                reference=reference,
                customer_reference="cust_ops",
                amount_value=Decimal(amount),
                currency=EUR,
                status=OrderStatus.PAID,
                execution_id=f"exec_{uuid.uuid4().hex[:12]}",
                capture_mode=mode,
            )
        )
    return reference


async def with_operation(
    sessions: async_sessionmaker[AsyncSession],
    reference: str,
    kind: OperationKind,
    amount: str | None,
    state: OperationState,
    result_code: str | None = None,
) -> PaymentOperation:
    """Request an operation on the order as the intake does, then settle it in ``state``."""
    money = None if amount is None else Money(Decimal(amount), EUR)
    async with sessions.begin() as session:
        requested = await request_operation(session, reference=reference, kind=kind, amount=money)
        operation_id = requested.row.id
    async with sessions.begin() as session:
        await apply_operation_outcome(session, operation_id, state, result_code=result_code)
    return await operation(sessions, operation_id)


async def operation(
    sessions: async_sessionmaker[AsyncSession], operation_id: int
) -> PaymentOperation:
    async with sessions() as session:
        row = await session.get(PaymentOperation, operation_id)
    assert row is not None
    return row


async def waiting_commands(connection: AbstractRobustConnection, deps: Deps) -> int:
    """``operation.execute`` commands ready on this test's operations queue."""
    async with connection.channel() as channel:
        declared = await channel.declare_queue(deps.names.operations_queue, passive=True)
        return declared.declaration_result.message_count or 0


async def outbox_of(
    sessions: async_sessionmaker[AsyncSession], reference: str
) -> list[OutboxMessage]:
    async with sessions() as session:
        rows = await session.scalars(
            select(OutboxMessage)
            .join(Order, Order.id == OutboxMessage.order_id)
            .where(Order.reference == reference)
            .order_by(OutboxMessage.id)
        )
        return list(rows)


def field(output: str, label: str) -> str:
    """The value of the ``label:`` line of a command's output."""
    (line,) = [line for line in output.splitlines() if line.startswith(f"{label}:")]
    return line.split(":", 1)[1].strip()


async def test_orders_show_prints_the_money_picture_and_every_operation(
    recon: Invoke, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    reference = await paid_order(sessions)
    capture = await with_operation(
        sessions, reference, OperationKind.CAPTURE, "12.00", OperationState.SUCCEEDED, "Success"
    )
    refund = await with_operation(
        sessions, reference, OperationKind.REFUND, "2.50", OperationState.FAILED, "Rejected"
    )

    result = await recon("orders", "show", reference)

    assert result.exit_code == 0, result.output
    assert field(result.stdout, "capture mode") == "manual"
    assert field(result.stdout, "authorized") == "20.00 EUR"
    assert field(result.stdout, "captured") == "12.00 EUR"
    assert field(result.stdout, "refunded") == "0.00 EUR"
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line}
    assert rows[str(capture.id)][1:8] == [
        "capture",
        "succeeded",
        "12.00",
        "EUR",
        "True",
        "Success",
        str(capture.idempotency_key),
    ]
    assert rows[str(refund.id)][1:8] == [
        "refund",
        "failed",
        "2.50",
        "EUR",
        "-",
        "Rejected",
        str(refund.idempotency_key),
    ]
    assert settings.payrails_client_secret.reveal() not in result.output


async def test_capture_with_yes_is_stored_and_handed_to_the_worker_which_sends_it(
    recon: Invoke,
    ops_deps: Deps,
    shop: Shop,
    sessions: async_sessionmaker[AsyncSession],
    amqp_connection: AbstractRobustConnection,
) -> None:
    reference, _ = await shop.pay(APPROVE)  # authorized in the sandbox, manual capture
    async with sessions.begin() as session:
        await session.execute(
            update(Order)
            .where(Order.reference == reference)
            .values(status=OrderStatus.PAID, capture_mode=CaptureMode.MANUAL)
        )

    result = await recon("orders", "capture", reference, "--amount", "5.00", "--no-final", "--yes")

    assert result.exit_code == 0, result.output
    assert field(result.stdout, "operation") == (
        "capture 5.00 EUR (not final: more captures may follow)"
    )
    assert field(result.stdout, "if it succeeds") == (
        "authorized 12.50 EUR, captured 5.00 EUR, refunded 0.00 EUR"
    )
    (stored,) = await operations_of(sessions, reference)
    assert (stored.kind, stored.state, stored.amount_value, stored.final) == (
        OperationKind.CAPTURE,
        OperationState.REQUESTED,
        Decimal("5.00"),
        False,
    )
    assert stored.command_id is not None
    assert stored.command_id.startswith("recon:")
    assert f"key {stored.idempotency_key}" in result.stdout
    queue = await ops_deps.channel.get_queue(ops_deps.names.operations_queue)
    command = await queue.get(timeout=5)
    assert command is not None
    assert json.loads(command.body) == {"operationId": str(stored.idempotency_key)}
    outcome = await execute_operation(ops_deps, ExecuteCommand.from_body(command.body))
    await command.ack()
    assert outcome is ExecuteOutcome.IN_FLIGHT
    sent = await operation(sessions, stored.id)
    assert sent.state is OperationState.IN_FLIGHT
    assert sent.payrails_action_id is not None
    assert await waiting_commands(amqp_connection, ops_deps) == 0


async def test_a_second_capture_request_gets_a_fresh_command_id(
    recon: Invoke, ops_deps: Deps, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference = await paid_order(sessions)

    first = await recon("orders", "capture", reference, "--amount", "5.00", "--no-final", "--yes")
    second = await recon("orders", "capture", reference, "--amount", "5.00", "--no-final", "--yes")

    assert (first.exit_code, second.exit_code) == (0, 0), first.output + second.output
    rows = await operations_of(sessions, reference)
    assert len(rows) == 2
    assert len({row.command_id for row in rows}) == 2
    assert len({row.idempotency_key for row in rows}) == 2


async def test_dry_run_prints_the_outcome_and_stores_and_sends_nothing(
    recon: Invoke,
    ops_deps: Deps,
    sessions: async_sessionmaker[AsyncSession],
    amqp_connection: AbstractRobustConnection,
) -> None:
    reference = await paid_order(sessions)

    result = await recon("orders", "capture", reference, "--dry-run")

    assert result.exit_code == 0, result.output
    assert field(result.stdout, "now") == (
        "authorized 20.00 EUR, captured 0.00 EUR, refunded 0.00 EUR"
    )
    assert field(result.stdout, "operation") == "capture 20.00 EUR (final)"
    assert field(result.stdout, "if it succeeds") == (
        "authorized 20.00 EUR, captured 20.00 EUR, refunded 0.00 EUR"
    )
    assert "nothing stored, nothing sent" in result.stdout
    assert await operations_of(sessions, reference) == []
    assert await waiting_commands(amqp_connection, ops_deps) == 0


async def test_a_declined_confirmation_stores_and_sends_nothing(
    recon: Invoke,
    ops_deps: Deps,
    sessions: async_sessionmaker[AsyncSession],
    amqp_connection: AbstractRobustConnection,
) -> None:
    reference = await paid_order(sessions)
    await with_operation(sessions, reference, OperationKind.CAPTURE, None, OperationState.SUCCEEDED)

    result = await recon("orders", "refund", reference, "--amount", "3.00", stdin="n\n")

    assert result.exit_code == 1
    assert "Request this refund?" in result.stderr
    assert field(result.stdout, "operation") == "refund 3.00 EUR"
    assert "not confirmed: nothing stored, nothing sent" in result.stderr
    (capture,) = await operations_of(sessions, reference)
    assert capture.kind is OperationKind.CAPTURE
    assert await waiting_commands(amqp_connection, ops_deps) == 0


async def test_a_confirmed_cancel_voids_the_whole_authorization(
    recon: Invoke, ops_deps: Deps, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference = await paid_order(sessions)

    result = await recon("orders", "cancel", reference, stdin="y\n")

    assert result.exit_code == 0, result.output
    (cancel,) = await operations_of(sessions, reference)
    assert (cancel.kind, cancel.amount_value, cancel.state) == (
        OperationKind.CANCEL,
        Decimal("20.00"),
        OperationState.REQUESTED,
    )


@pytest.mark.parametrize(
    ("mode", "args", "code"),
    [
        (CaptureMode.INSTANT, ["capture"], "capture_not_manual"),
        (CaptureMode.MANUAL, ["capture", "--amount", "20.01"], "exceeds_authorized"),
        (CaptureMode.MANUAL, ["capture", "--amount", "1.001"], "amount_invalid"),
        (CaptureMode.MANUAL, ["refund"], "exceeds_captured"),
        (CaptureMode.MANUAL, ["refund", "--dry-run"], "exceeds_captured"),
        (CaptureMode.MANUAL, ["cancel", "--amount", "1.00"], "partial_cancel"),
    ],
)
async def test_a_request_the_money_rules_refuse_exits_2_and_stores_nothing(
    recon: Invoke,
    ops_deps: Deps,
    sessions: async_sessionmaker[AsyncSession],
    amqp_connection: AbstractRobustConnection,
    mode: CaptureMode,
    args: list[str],
    code: str,
) -> None:
    reference = await paid_order(sessions, mode=mode)
    kind, *options = args

    result = await recon("orders", kind, reference, *options, "--yes")

    assert result.exit_code == 2, result.output
    assert f"{kind} refused ({code})" in result.stderr
    assert "Traceback" not in result.output
    assert await operations_of(sessions, reference) == []
    assert await waiting_commands(amqp_connection, ops_deps) == 0


@pytest.mark.parametrize("kind", ["capture", "cancel", "refund"])
async def test_an_operation_on_an_unknown_order_exits_2(recon: Invoke, kind: str) -> None:
    result = await recon("orders", kind, "no-such-order", "--yes")

    assert result.exit_code == 2
    assert "order no-such-order not found" in result.stderr


async def test_an_amount_that_is_not_a_decimal_is_a_usage_error(recon: Invoke) -> None:
    result = await recon("orders", "refund", "any-order", "--amount", "-1", "--yes")

    assert result.exit_code == 2
    assert "is not an amount such as 12.34" in result.output


async def test_review_list_shows_operations_with_an_unknown_outcome(
    recon: Invoke, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference = await paid_order(sessions)
    unknown = await with_operation(
        sessions, reference, OperationKind.CAPTURE, "7.00", OperationState.UNKNOWN, "Timeout"
    )

    result = await recon("review", "list")

    assert result.exit_code == 0, result.output
    (row,) = [line.split() for line in result.stdout.splitlines() if line.startswith(reference)]
    assert row[1:7] == [
        str(unknown.id),
        "capture",
        "7.00",
        "EUR",
        "Timeout",
        str(unknown.idempotency_key),
    ]
    assert "operation(s) with an unknown outcome" in result.stderr


async def test_resolving_an_unknown_capture_as_succeeded_announces_order_captured(
    recon: Invoke, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference = await paid_order(sessions)
    unknown = await with_operation(
        sessions, reference, OperationKind.CAPTURE, "7.00", OperationState.UNKNOWN, "Timeout"
    )

    resolved = await recon(
        "review", "resolve", reference, "--operation", str(unknown.idempotency_key),
        "--verdict", "succeeded", "--note", "PSP shows the capture, ref 991",
    )  # fmt: skip
    again = await recon(
        "review", "resolve", reference, "--operation", str(unknown.id),
        "--verdict", "failed", "--note", "twice",
    )  # fmt: skip

    assert resolved.exit_code == 0, resolved.output
    assert "unknown -> succeeded; announced order.captured" in resolved.stdout
    settled = await operation(sessions, unknown.id)
    assert (settled.state, settled.reason) == (
        OperationState.SUCCEEDED,
        "PSP shows the capture, ref 991",
    )
    async with sessions() as session:
        order = await session.scalar(select(Order).where(Order.reference == reference))
    assert order is not None
    assert order.captured_value == Decimal("7.00")
    (message,) = await outbox_of(sessions, reference)
    assert message.routing_key == "order.captured"
    body = message.body
    assert body["cause"] == "operator"
    assert body["totals"]["captured"] == "7.00"
    assert body["operation"]["id"] == str(unknown.idempotency_key)
    assert check(body, "OperationMessage") == []
    assert again.exit_code == 2
    assert "has no unknown outcome to resolve" in again.stderr
    assert len(await outbox_of(sessions, reference)) == 1


async def test_resolving_an_unknown_refund_as_failed_announces_order_refund_failed(
    recon: Invoke, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference = await paid_order(sessions)
    await with_operation(sessions, reference, OperationKind.CAPTURE, None, OperationState.SUCCEEDED)
    unknown = await with_operation(
        sessions, reference, OperationKind.REFUND, "4.00", OperationState.UNKNOWN
    )

    result = await recon(
        "review", "resolve", reference, "--operation", str(unknown.id),
        "--verdict", "failed", "--note", "PSP has no refund",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert (await operation(sessions, unknown.id)).state is OperationState.FAILED
    (message,) = await outbox_of(sessions, reference)
    assert message.routing_key == "order.refund_failed"


async def test_an_operation_verdict_on_the_wrong_order_or_of_the_wrong_kind_exits_2(
    recon: Invoke, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference = await paid_order(sessions)
    other = await paid_order(sessions)
    unknown = await with_operation(
        sessions, reference, OperationKind.CAPTURE, "7.00", OperationState.UNKNOWN
    )

    elsewhere = await recon(
        "review", "resolve", other, "--operation", str(unknown.id),
        "--verdict", "succeeded", "--note", "n",
    )  # fmt: skip
    order_verdict = await recon(
        "review", "resolve", reference, "--operation", str(unknown.id),
        "--verdict", "paid", "--note", "n",
    )  # fmt: skip
    missing = await recon(
        "review", "resolve", "no-such-order", "--operation", "1",
        "--verdict", "failed", "--note", "n",
    )  # fmt: skip

    assert elsewhere.exit_code == 2
    assert f"order {other} has no operation {unknown.id}" in elsewhere.stderr
    assert order_verdict.exit_code == 2
    assert missing.exit_code == 2
    assert "order no-such-order not found" in missing.stderr
    assert (await operation(sessions, unknown.id)).state is OperationState.UNKNOWN


async def test_a_broker_that_does_not_answer_leaves_the_operation_requested_for_the_sweeper(
    base_env: dict[str, str], settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference = await paid_order(sessions)
    env = {
        **base_env,
        "AMQP_NAME_PREFIX": settings.amqp_name_prefix,
        "AMQP_URL": "amqp://ops:hunter2@127.0.0.1:1/",
    }

    result = await asyncio.to_thread(
        CliRunner().invoke, cli, ["orders", "capture", reference, "--yes"], env=env
    )

    assert result.exit_code == 1
    assert "stored as requested, but not handed to the worker" in result.stderr
    assert "hunter2" not in result.output
    assert "Traceback" not in result.output
    (stored,) = await operations_of(sessions, reference)
    assert stored.state is OperationState.REQUESTED
