"""Payment operations in the database: requested under the order's row lock, before any call.

``request_operation`` locks the order (SELECT ... FOR UPDATE), checks the money invariants
against the order's picture and stores the operation with a fresh UUIDv4 idempotency key, so the
key exists before Payrails is called and every retry reuses it. ``apply_operation_outcome``
applies what Payrails reports under the same lock and keeps the order's totals equal to the
picture's. Neither commits: the caller's ``session.begin()`` block owns the transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import Order, PaymentOperation
from shared.errors import ReconError
from shared.money import Money
from shared.money_picture import (
    Applied,
    MoneyPicture,
    Operation,
    OperationReport,
    VerdictRefused,
    apply_report,
    resolve_unknown,
)
from shared.money_requests import MoneyConflict, check_request
from shared.operation_states import (
    TERMINAL_STATES,
    OperationKind,
    OperationState,
)
from shared.order_store import lock_order, utcnow
from shared.state_machine import OrderStatus


class OrderNotFound(ReconError):
    """No order with that reference."""


class CommandReused(MoneyConflict, code="command_reused"):
    """A command id already used for another operation."""


def operation_of(row: PaymentOperation) -> Operation:
    return Operation(
        id=row.id,
        kind=row.kind,
        amount=row.amount_value,
        idempotency_key=row.idempotency_key,
        state=row.state,
        result_code=row.result_code,
        final=bool(row.final),
        reason=row.reason,
    )


def picture_of(order: Order, rows: Sequence[PaymentOperation]) -> MoneyPicture:
    """The order's money picture: its operations, and a checkout authorization when paid."""
    authorized = order.amount_value if order.status is OrderStatus.PAID else Decimal(0)
    if any(row.kind is OperationKind.AUTHORIZE for row in rows):
        authorized = Decimal(0)  # the authorization is an operation of its own
    operations = tuple(sorted(map(operation_of, rows), key=lambda op: op.id))
    return MoneyPicture(order.currency, operations, authorized, order.capture_mode)


async def operations_of(session: AsyncSession, order_id: int) -> list[PaymentOperation]:
    query = select(PaymentOperation).where(PaymentOperation.order_id == order_id)
    return list((await session.scalars(query.order_by(PaymentOperation.id))).all())


@dataclass(frozen=True, slots=True)
class Requested:
    """The stored operation, and whether this request stored it (False: a repeated command)."""

    row: PaymentOperation
    created: bool


async def _by_command(session: AsyncSession, command_id: str) -> PaymentOperation | None:
    query = select(PaymentOperation).where(PaymentOperation.command_id == command_id)
    return (await session.scalars(query)).one_or_none()


def _same_command(
    row: PaymentOperation, order: Order, kind: OperationKind, amount: Money | None
) -> PaymentOperation:
    """The operation ``row`` stored for a command, when the repeated command asks for the same."""
    same_amount = amount is None or (amount.value, amount.currency) == (
        row.amount_value,
        row.currency,
    )
    if row.order_id != order.id or row.kind is not kind or not same_amount:
        raise CommandReused("the command id was used for another operation")
    return row


async def request_operation(
    session: AsyncSession,
    *,
    reference: str,
    kind: OperationKind,
    amount: Money | None = None,
    final: bool = True,
    command_id: str | None = None,
) -> Requested:
    """Store a new operation on the order, or return the one stored for ``command_id``.

    Raises OrderNotFound, or a MoneyRuleError (and stores nothing) when the operation breaks a
    money invariant. No commit.
    """
    order = await lock_order(session, reference=reference)
    if order is None:
        raise OrderNotFound(f"no order {reference!r}")
    if command_id is not None:
        existing = await _by_command(session, command_id)
        if existing is not None:
            return Requested(_same_command(existing, order, kind, amount), created=False)
    picture = picture_of(order, await operations_of(session, order.id))
    value = check_request(picture, kind, amount)
    row = PaymentOperation(
        order_id=order.id,
        kind=kind,
        state=OperationState.REQUESTED,
        amount_value=value,
        currency=order.currency,
        final=final if kind is OperationKind.CAPTURE else None,
        idempotency_key=uuid.uuid4(),
        command_id=command_id,
        payrails_execution_id=order.execution_id,
    )
    session.add(row)
    await session.flush()
    return Requested(row, created=True)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a report did, and the order's picture after it."""

    applied: Applied
    picture: MoneyPicture


async def apply_operation_outcome(
    session: AsyncSession,
    operation_id: int,
    state: OperationState,
    *,
    result_code: str | None = None,
    reported: Money | None = None,
    action_id: str | None = None,
) -> Outcome | None:
    """Apply Payrails' report on one operation under its order's lock; None if no such one.

    The operation only moves forward and its terminal state is applied once; the order's
    captured and refunded totals follow the picture. No commit.
    """
    order_id = await session.scalar(
        select(PaymentOperation.order_id).where(PaymentOperation.id == operation_id)
    )
    order = None if order_id is None else await lock_order(session, order_id=order_id)
    if order is None:
        return None
    rows = await operations_of(session, order.id)
    picture, applied = apply_report(
        picture_of(order, rows), OperationReport(operation_id, state, result_code, reported)
    )
    row = next(row for row in rows if row.id == operation_id)
    if action_id is not None and row.payrails_action_id is None:
        row.payrails_action_id = action_id
    if applied in (Applied.APPLIED, Applied.REVIEW):
        _write(order, row, picture)
    await session.flush()
    return Outcome(applied, picture)


def find_operation(rows: Sequence[PaymentOperation], ident: str) -> PaymentOperation | None:
    """The operation ``ident`` names: its id (the sequence number) or its UUID key."""
    if ident.isascii() and ident.isdigit():
        return next((row for row in rows if row.id == int(ident)), None)
    try:
        key = uuid.UUID(ident)
    except ValueError:
        return None
    return next((row for row in rows if row.idempotency_key == key), None)


@dataclass(frozen=True, slots=True)
class Resolved:
    """The locked order, the resolved operation's id, and the picture with the verdict."""

    order: Order
    operation_id: int
    picture: MoneyPicture


async def resolve_operation(
    session: AsyncSession, *, reference: str, operation: str, verdict: OperationState, note: str
) -> Resolved:
    """A person's verdict on the order's unknown operation ``operation`` (id or key), stored
    under the order's row lock with the order's totals; see ``money_picture.resolve_unknown``.

    Raises OrderNotFound, or VerdictRefused (and stores nothing) for an operation that is not
    the order's, not unknown, or whose verdict would break a money invariant. No commit.
    """
    order = await lock_order(session, reference=reference)
    if order is None:
        raise OrderNotFound(f"no order {reference!r}")
    rows = await operations_of(session, order.id)
    row = find_operation(rows, operation)
    if row is None:
        raise VerdictRefused(f"order {reference} has no operation {operation}")
    picture = resolve_unknown(picture_of(order, rows), row.id, verdict, note)
    _write(order, row, picture)
    await session.flush()
    return Resolved(order, row.id, picture)


def _write(order: Order, row: PaymentOperation, picture: MoneyPicture) -> None:
    operation = picture.operation(row.id)
    assert operation is not None  # the picture was built from these rows
    now = utcnow()
    row.state = operation.state
    row.result_code = operation.result_code
    row.reason = operation.reason
    row.updated_at = now
    if operation.state in TERMINAL_STATES:
        row.completed_at = now
    order.captured_value = picture.captured
    order.refunded_value = picture.refunded
    order.updated_at = now
    order.version += 1


def _same_amount(row: PaymentOperation, amount: Money | None) -> bool:
    """A cancel moves whatever is left, which Payrails may count otherwise: its kind is enough."""
    if row.kind is OperationKind.CANCEL:
        return True
    return amount is not None and (row.amount_value, row.currency) == (
        amount.value,
        amount.currency,
    )


def match_operation(
    rows: Sequence[PaymentOperation],
    kind: OperationKind,
    *,
    action_id: str | None,
    amount: Money | None,
) -> PaymentOperation | None:
    """The operation a Payrails report is about: by its action id, else the oldest one of its
    kind and amount in flight and not bound to another action."""
    if action_id is not None:
        for row in rows:
            if row.payrails_action_id == action_id:
                return row
    for row in rows:
        if (
            row.kind is kind
            and row.state is OperationState.IN_FLIGHT
            and row.payrails_action_id is None
            and _same_amount(row, amount)
        ):
            return row
    return None


def awaiting_call(
    rows: Sequence[PaymentOperation], kind: OperationKind, amount: Money | None
) -> bool:
    """An operation of this kind and amount is requested and its call's answer not stored yet:
    a report that matches nothing else may be about it."""
    return any(
        row.kind is kind and row.state is OperationState.REQUESTED and _same_amount(row, amount)
        for row in rows
    )


async def record_reported_operation(
    session: AsyncSession,
    order: Order,
    kind: OperationKind,
    amount: Money,
    state: OperationState,
    *,
    action_id: str | None,
    result_code: str | None = None,
) -> Outcome | None:
    """Record an operation Payrails did by itself (its instant capture), then apply its state.

    The row gets a key of its own, never sent (nothing of ours calls Payrails for it), and goes
    through the same invariants as any report: a success that breaks one is ``unknown``. The
    order must be locked by the caller. No commit.
    """
    row = PaymentOperation(
        order_id=order.id,
        kind=kind,
        state=OperationState.IN_FLIGHT,
        amount_value=amount.value,
        currency=order.currency,
        final=True if kind is OperationKind.CAPTURE else None,
        idempotency_key=uuid.uuid4(),
        payrails_execution_id=order.execution_id,
        payrails_action_id=action_id,
    )
    session.add(row)
    await session.flush()
    return await apply_operation_outcome(
        session, row.id, state, result_code=result_code, reported=amount
    )
