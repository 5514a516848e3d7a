"""The operations consumer: execute one stored capture, cancel or refund against Payrails.

A command (``operation.execute``, body ``{"operationId": ...}``) names an operation row that
``request_operation`` stored with its idempotency key: by the row's id (a number, or its digits as
a string) or by that UUIDv4 key, which identifies the operation as well. Only
an operation still ``requested`` is sent, with that stored key, so a redelivered command for one
in flight or decided does nothing, and every retry of the call is the same call to Payrails.

Outcomes (``recon_operations_executed_total``):
- ``in_flight``: Payrails accepted it (202); the action id is stored and the webhook (or the
  sweeper) brings the outcome;
- ``failed``: a refusal that proves nothing happened (a validation error, an action not allowed
  now), with Payrails' code as the result code, announced like any failed operation;
- ``unknown``: an answer that does not prove nothing happened (a conflict, a timed-out request,
  an answer we cannot read), or no answer after the last delay tier: manual review, never a
  second call with a new key;
- ``retried``: no usable answer (connection lost, timeout, 5xx after the client's own retries):
  a delay tier, then the same call with the same key;
- ``skipped``: the operation is in flight or decided already; ``missing``: no such operation.

The message is acked only after the outcome's transaction has committed (or the retry copy was
confirmed).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum

import structlog
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import DBAPIError

from shared import metrics
from shared.db.failover import is_transient
from shared.db.models import Order, PaymentOperation
from shared.errors import InvalidPayload, PublishError, TransientError
from shared.money import Money
from shared.operation_states import TERMINAL_STATES, OperationKind, OperationState
from shared.order_store import lock_order
from shared.payloads import json_object
from shared.payrails.client import ActionAck
from shared.payrails.errors import PayrailsError, PayrailsTransientError, is_definite_refusal
from worker.deps import Deps
from worker.operation_events import apply_and_announce
from worker.retry import attempt_of, dead_letter, retry_later

log = structlog.get_logger(__name__)

# An action refused as not allowed in the execution's state: for an operation sent once with a
# key of its own, Payrails would have replayed an earlier acceptance of that key instead.
NOT_ALLOWED = "workflow.action.not-allowed"
MAX_RESULT_CHARS = 64


class ExecuteOutcome(StrEnum):
    IN_FLIGHT = "in_flight"
    FAILED = "failed"
    UNKNOWN = "unknown"
    RETRIED = "retried"
    SKIPPED = "skipped"
    MISSING = "missing"
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True, slots=True)
class ExecuteCommand:
    """``{"operationId": ...}``: the operation to execute, by row id or by its UUIDv4 key."""

    operation_id: int | None = None
    key: uuid.UUID | None = None

    @classmethod
    def from_body(cls, body: bytes) -> ExecuteCommand:
        data = json_object(body, "operation command")
        raw = data.get("operationId")
        invalid = InvalidPayload("operationId must be an operation's id or its UUID")
        if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
            return cls(operation_id=raw)
        if not isinstance(raw, str) or not raw or len(raw) > 64:
            raise invalid
        if raw.isascii() and raw.isdigit():
            return cls(operation_id=int(raw))
        try:
            return cls(key=uuid.UUID(raw))
        except ValueError as exc:
            raise invalid from exc

    def to_body(self) -> bytes:
        value = str(self.key) if self.key is not None else str(self.operation_id)
        return json.dumps({"operationId": value}).encode()

    def where(self) -> ColumnElement[bool]:
        if self.key is not None:
            return PaymentOperation.idempotency_key == self.key
        return PaymentOperation.id == self.operation_id


@dataclass(frozen=True, slots=True)
class Pending:
    """A ``requested`` operation as read before the call (no lock held across it)."""

    id: int
    kind: OperationKind
    amount: Money
    final: bool
    key_hex: str
    execution_id: str | None
    reference: str


async def _load(deps: Deps, command: ExecuteCommand) -> Pending | ExecuteOutcome:
    async with deps.sessions() as session:
        row = await session.scalar(select(PaymentOperation).where(command.where()))
        if row is None:
            return ExecuteOutcome.MISSING
        if row.state is not OperationState.REQUESTED:
            return ExecuteOutcome.SKIPPED
        order = await session.scalar(select(Order).where(Order.id == row.order_id))
        assert order is not None  # a foreign key
        return Pending(
            id=row.id,
            kind=row.kind,
            amount=Money(row.amount_value, row.currency),
            final=bool(row.final),
            key_hex=row.idempotency_key.hex,
            execution_id=row.payrails_execution_id or order.execution_id,
            reference=order.reference,
        )


async def _call(deps: Deps, pending: Pending, execution_id: str) -> ActionAck:
    """The Payrails write, with the operation's stored key."""
    key = uuid.UUID(hex=pending.key_hex)
    payrails = deps.payrails
    if pending.kind is OperationKind.CAPTURE:
        return await payrails.capture(
            execution_id, idempotency_key=key, amount=pending.amount, final=pending.final
        )
    if pending.kind is OperationKind.REFUND:
        return await payrails.refund(execution_id, idempotency_key=key, amount=pending.amount)
    if pending.kind is OperationKind.CANCEL:
        return await payrails.cancel(execution_id, idempotency_key=key)
    raise InvalidPayload(f"{pending.kind.value} operations are not executed by this consumer")


def refused(exc: PayrailsError) -> bool:
    """A refusal that proves Payrails did nothing with this operation's key."""
    if exc.retryable:
        return False
    if exc.code == NOT_ALLOWED and exc.status in (400, 403, 422):
        return True
    return is_definite_refusal(exc)


def _label(exc: PayrailsError | InvalidPayload) -> str:
    if isinstance(exc, PayrailsError):
        return (exc.code or str(exc.status))[:MAX_RESULT_CHARS]
    return "unreadable answer"


async def _settle(
    deps: Deps,
    operation_id: int,
    state: OperationState,
    *,
    result_code: str | None = None,
    action_id: str | None = None,
    reason: str | None = None,
) -> None:
    """Apply the call's outcome under the order lock, and announce a terminal one. Commits."""
    async with deps.sessions.begin() as session:
        order_id = await session.scalar(
            select(PaymentOperation.order_id).where(PaymentOperation.id == operation_id)
        )
        order = None if order_id is None else await lock_order(session, order_id=order_id)
        if order is None:
            return
        row = await session.get(PaymentOperation, operation_id)
        if reason and row is not None and row.state not in TERMINAL_STATES:
            row.reason = reason  # before the outcome is applied, so its message carries it
        await apply_and_announce(
            session,
            order,
            operation_id,
            state,
            cause="operation",
            result_code=result_code,
            action_id=action_id,
        )


async def execute_operation(
    deps: Deps, command: ExecuteCommand, *, last_attempt: bool = False
) -> ExecuteOutcome:
    """Send the operation once; raises TransientError to retry (unless ``last_attempt``)."""
    pending = await _load(deps, command)
    if isinstance(pending, ExecuteOutcome):
        return pending
    with structlog.contextvars.bound_contextvars(
        operation_id=pending.id, kind=pending.kind.value, order_reference=pending.reference
    ):
        if pending.execution_id is None:
            await _settle(deps, pending.id, OperationState.FAILED, result_code="no_execution")
            return ExecuteOutcome.FAILED
        try:
            ack = await _call(deps, pending, pending.execution_id)
        except PayrailsTransientError as exc:
            if not last_attempt:
                raise
            reason = f"no answer from Payrails after the last retry: {_label(exc)}"
            log.error("operation.unknown", reason=reason)
            await _settle(deps, pending.id, OperationState.UNKNOWN, reason=reason)
            return ExecuteOutcome.UNKNOWN
        except (PayrailsError, InvalidPayload) as exc:
            if isinstance(exc, PayrailsError) and refused(exc):
                log.warning("operation.refused", error=repr(exc))
                await _settle(deps, pending.id, OperationState.FAILED, result_code=_label(exc))
                return ExecuteOutcome.FAILED
            reason = f"{pending.kind.value} outcome unknown: {_label(exc)}"
            log.error("operation.unknown", error=repr(exc))
            await _settle(
                deps, pending.id, OperationState.UNKNOWN, result_code=_label(exc), reason=reason
            )
            return ExecuteOutcome.UNKNOWN
        await _settle(deps, pending.id, OperationState.IN_FLIGHT, action_id=ack.action_id)
        return ExecuteOutcome.IN_FLIGHT


async def _process(message: AbstractIncomingMessage, deps: Deps) -> tuple[ExecuteOutcome, str]:
    """One command to one outcome (and the kind, for the metric)."""
    queue = deps.names.operations_queue
    try:
        command = ExecuteCommand.from_body(message.body)
    except InvalidPayload as exc:
        log.warning("operation.command_invalid", error=str(exc))
        await dead_letter(message, deps, source_queue=queue, reason="invalid_payload")
        return ExecuteOutcome.DEAD_LETTERED, "unknown"
    last = attempt_of(message) >= len(deps.settings.worker_retry_delays_seconds)
    try:
        outcome = await execute_operation(deps, command, last_attempt=last)
    except (TransientError, DBAPIError) as exc:
        if not is_transient(exc):
            raise
        log.warning("operation.transient_failure", error=type(exc).__name__)
        result = await retry_later(message, deps, source_queue=queue, reason="transient")
        return ExecuteOutcome(result), await _kind_of(deps, command)
    return outcome, await _kind_of(deps, command)


async def _kind_of(deps: Deps, command: ExecuteCommand) -> str:
    try:
        async with deps.sessions() as session:
            kind = await session.scalar(select(PaymentOperation.kind).where(command.where()))
    except DBAPIError:
        return "unknown"
    return kind.value if kind is not None else "unknown"


async def handle_operation(message: AbstractIncomingMessage, deps: Deps) -> None:
    """Consume one operation command; ack only after the outcome is durable."""
    started = time.perf_counter()
    async with message.process(requeue=False, ignore_processed=True):
        with structlog.contextvars.bound_contextvars(
            message_id=message.message_id, redelivered=message.redelivered
        ):
            try:
                outcome, kind = await _process(message, deps)
            except PublishError:
                log.warning("operation.handoff_failed")
                await message.nack(requeue=True)
                return
            await message.ack()
            metrics.OPERATIONS_EXECUTED.labels(kind, outcome.value).inc()
            log.info(
                "operation.executed",
                outcome=outcome.value,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )
