"""Captures, cancels and refunds an operator asks for, and their verdicts on unknown outcomes.

``recon orders capture|cancel|refund`` takes the merchant API's path and no other: the money
rules are checked on the order's picture first (``plan``: what the operation would move, and the
picture if it succeeds), which is all a dry run does; then the operation is stored under the
order's row lock by ``take_request`` with a fresh command id, and after the commit the confirmed
``operation.execute`` hands it to the worker, which alone calls Payrails. The amount stored must
be the one the operator confirmed: when the order's money changed in between, nothing is stored.

``recon review resolve --operation`` applies a person's verdict on an unknown operation under
the order's row lock and writes its order message to the outbox in the same transaction, as the
worker does for an outcome Payrails reports.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from aio_pika.exceptions import AMQPError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.config import WorkerSettings
from shared.db.models import Order, PaymentOperation
from shared.errors import PublishError, ReconError
from shared.messaging import (
    ROUTING_EXECUTE_OPERATION,
    Names,
    connect,
    open_channel,
    persistent_properties,
    publish_frames,
)
from shared.money import Money
from shared.money_picture import MoneyPicture, Operation
from shared.money_requests import check_request
from shared.operation_intake import ExecuteOperation, OperationRequest, Taken, take_request
from shared.operation_messages import announce_outcome
from shared.operation_states import OperationKind, OperationState
from shared.operation_store import operations_of, picture_of, resolve_operation

CAUSE = "operator"  # the cause an operator's verdict is announced with
COMMAND_PREFIX = "recon:"  # the command id of an operation an operator asked for


@dataclass(frozen=True, slots=True)
class OrderMoney:
    """An order as read now: its operations and its money picture."""

    order: Order
    operations: list[PaymentOperation]
    picture: MoneyPicture


async def load_money(
    sessions: async_sessionmaker[AsyncSession], reference: str
) -> OrderMoney | None:
    """The order ``reference`` with its operations and picture; None when there is none."""
    async with sessions() as session:
        order = await session.scalar(select(Order).where(Order.reference == reference))
        if order is None:
            return None
        rows = await operations_of(session, order.id)
        return OrderMoney(order, rows, picture_of(order, rows))


@dataclass(frozen=True, slots=True)
class Plan:
    """What an operation would do: the request, the amount it moves, the picture if it succeeds."""

    request: OperationRequest
    value: Decimal
    before: MoneyPicture
    after: MoneyPicture


def make_request(
    picture: MoneyPicture, kind: OperationKind, amount: Decimal | None, final: bool
) -> OperationRequest:
    """The request, with ``amount`` (None: all that remains) in the order's currency."""
    money = None if amount is None else Money(amount, picture.currency)
    return OperationRequest(kind, money, final)


def plan(picture: MoneyPicture, request: OperationRequest) -> Plan:
    """The plan the money rules allow; raises the MoneyRuleError that refuses the request."""
    value = check_request(picture, request.kind, request.amount)
    succeeded = Operation(
        id=max((op.id for op in picture.operations), default=0) + 1,
        kind=request.kind,
        amount=value,
        idempotency_key=uuid.UUID(int=0),  # never stored: the picture as if it succeeded
        state=OperationState.SUCCEEDED,
        final=request.final,
    )
    return Plan(request, value, picture, picture.with_operation(succeeded))


class MoneyChanged(ReconError):
    """The order's money changed after the operator confirmed: nothing was stored."""


def new_command_id() -> str:
    """A fresh command id: an operator's request is never a repeat of another."""
    return f"{COMMAND_PREFIX}{uuid.uuid4()}"


async def request(
    sessions: async_sessionmaker[AsyncSession], reference: str, confirmed: Plan
) -> Taken:
    """Store the confirmed operation as the merchant API does; commits.

    Raises OrderNotFound, the MoneyRuleError that refuses it now, or MoneyChanged when it would
    move another amount than the one confirmed; each stores nothing.
    """
    async with sessions.begin() as session:
        taken = await take_request(session, reference, confirmed.request, new_command_id())
        stored = taken.operation.amount_value
        if stored != confirmed.value:
            currency = confirmed.before.currency
            raise MoneyChanged(
                f"the order's money changed: the {confirmed.request.kind.value} would now move "
                f"{Money(stored, currency).format_value()} {currency}, not the "
                f"{Money(confirmed.value, currency).format_value()} {currency} confirmed"
            )
    return taken


async def hand_over(settings: WorkerSettings, execute: ExecuteOperation) -> str | None:
    """Publish ``operation.execute`` confirmed; None when the broker confirmed it, else why not."""
    names = Names.from_settings(settings)
    try:
        connection = await connect(settings.amqp_url.reveal(), name="recon-cli")
    except (OSError, AMQPError) as exc:
        return type(exc).__name__
    try:
        channel = await open_channel(connection)
        await publish_frames(
            channel,
            names.commands_exchange,
            ROUTING_EXECUTE_OPERATION,
            execute.to_body(),
            persistent_properties(message_id=execute.message_id, headers={}),
            timeout=settings.amqp_publish_timeout_seconds,
        )
    except PublishError as exc:
        return f"not confirmed ({exc})"
    except (OSError, AMQPError) as exc:
        return type(exc).__name__
    finally:
        await connection.close()
    return None


@dataclass(frozen=True, slots=True)
class Verdict:
    """A resolved operation, the picture after it and the routing key of its message."""

    operation: Operation
    picture: MoneyPicture
    routing_key: str | None


async def resolve(
    sessions: async_sessionmaker[AsyncSession],
    reference: str,
    operation: str,
    verdict: OperationState,
    note: str,
) -> Verdict:
    """Apply the verdict and write its order message in one transaction; commits.

    Raises OrderNotFound or VerdictRefused, having stored nothing.
    """
    async with sessions.begin() as session:
        resolved = await resolve_operation(
            session, reference=reference, operation=operation, verdict=verdict, note=note
        )
        routing_key = await announce_outcome(
            session, resolved.order, resolved.picture, resolved.operation_id, CAUSE
        )
    settled = resolved.picture.operation(resolved.operation_id)
    assert settled is not None  # resolve_operation found it in this picture
    return Verdict(settled, resolved.picture, routing_key)


async def unknown_operations(
    sessions: async_sessionmaker[AsyncSession],
) -> list[tuple[str, PaymentOperation]]:
    """Every operation whose outcome is unknown, oldest first, with its order's reference."""
    async with sessions() as session:
        rows = await session.execute(
            select(Order.reference, PaymentOperation)
            .join(Order, Order.id == PaymentOperation.order_id)
            .where(PaymentOperation.state == OperationState.UNKNOWN)
            .order_by(PaymentOperation.updated_at, PaymentOperation.id)
        )
        return [(row[0], row[1]) for row in rows]
