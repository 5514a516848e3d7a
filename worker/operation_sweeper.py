"""The sweeper's second half: re-poll captures, cancels and refunds stuck in flight.

A webhook can be lost, or come before Payrails' execution shows the outcome (the report is
then left in flight). Each pass claims operations ``in_flight`` for longer than
``SWEEPER_OPERATION_STUCK_AFTER_SECONDS`` the way orders are claimed (``FOR UPDATE SKIP
LOCKED``, bumping ``updated_at`` as the claim marker, so replicas do not take the same ones and a
still-pending operation is re-polled once per threshold), GETs each execution once with no
transaction open, and settles what the execution's status codes settle without doubt
(``settled_from_execution``), each order in its own short transaction under its row lock.
Nothing is ever sent to Payrails again: an operation Payrails still shows pending stays in
flight (``recon_operations{state="in_flight"}`` shows how many), and one it never reports on
waits for a person.

An operation still ``requested`` that long (its ``operation.execute`` command was lost, say) is
claimed the same way and its command published again: the consumer sends only a requested
operation, always with its stored key, so a second command never makes a second operation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

import aio_pika
import structlog
from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import metrics
from shared.db.models import Order, PaymentOperation
from shared.errors import InvalidPayload
from shared.messaging import ROUTING_EXECUTE_OPERATION, publish_confirmed
from shared.operation_states import OperationKind, OperationState
from shared.operation_store import operations_of
from shared.order_store import lock_order
from shared.payrails.errors import PayrailsError
from worker.deps import Deps
from worker.operation_events import apply_and_announce, settled_from_execution

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class OperationClaim:
    operation_id: int
    order_id: int
    execution_id: str
    kind: OperationKind


def _stuck_ids(state: OperationState, stuck_after: float, limit: int) -> Select[int]:
    """Up to ``limit`` operations in ``state`` untouched for ``stuck_after`` s, oldest first,
    locked and skipping those another sweeper holds."""
    return (
        select(PaymentOperation.id)
        .where(
            PaymentOperation.state == state,
            PaymentOperation.updated_at < func.now() - timedelta(seconds=stuck_after),
        )
        .order_by(PaymentOperation.updated_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


async def claim_stuck_operations(
    sessions: async_sessionmaker[AsyncSession], *, stuck_after: float, limit: int
) -> tuple[OperationClaim, ...]:
    """Claim up to ``limit`` operations in flight too long: SKIP LOCKED, and bump updated_at."""
    stuck = _stuck_ids(OperationState.IN_FLIGHT, stuck_after, limit)
    execution = func.coalesce(PaymentOperation.payrails_execution_id, Order.execution_id)
    claim = (
        update(PaymentOperation)
        .where(PaymentOperation.id.in_(stuck.scalar_subquery()))
        .where(Order.id == PaymentOperation.order_id)
        .values(updated_at=func.now())
        .returning(PaymentOperation.id, PaymentOperation.order_id, execution, PaymentOperation.kind)
    )
    async with sessions.begin() as session:
        rows = (await session.execute(claim)).all()
    return tuple(
        OperationClaim(op_id, order_id, execution_id, OperationKind(kind))
        for op_id, order_id, execution_id, kind in rows
        if execution_id is not None
    )


async def claim_unsent_operations(
    sessions: async_sessionmaker[AsyncSession], *, stuck_after: float, limit: int
) -> tuple[int, ...]:
    """Claim up to ``limit`` operations requested too long ago; bump updated_at; their ids."""
    stuck = _stuck_ids(OperationState.REQUESTED, stuck_after, limit)
    claim = (
        update(PaymentOperation)
        .where(PaymentOperation.id.in_(stuck.scalar_subquery()))
        .values(updated_at=func.now())
        .returning(PaymentOperation.id)
    )
    async with sessions.begin() as session:
        return tuple((await session.scalars(claim)).all())


async def resend_commands(deps: Deps) -> tuple[int, ...]:
    """Publish ``operation.execute`` again for operations left requested; their ids."""
    settings = deps.settings
    ids = await claim_unsent_operations(
        deps.sessions,
        stuck_after=settings.sweeper_operation_stuck_after_seconds,
        limit=settings.sweeper_batch_size,
    )
    for operation_id in ids:
        body = json.dumps({"operationId": str(operation_id)}).encode()
        message = aio_pika.Message(
            body,
            content_type="application/json",
            message_id=f"operation-{operation_id}",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await publish_confirmed(
            deps.channel,
            deps.names.commands_exchange,
            ROUTING_EXECUTE_OPERATION,
            message,
            timeout=settings.amqp_publish_timeout_seconds,
        )
        log.warning("sweeper.operation_resent", operation_id=operation_id)
    return ids


async def _settle_order(
    deps: Deps, order_id: int, kinds: set[OperationKind], execution_id: str
) -> list[tuple[int, OperationState]]:
    """Re-poll one execution and settle the order's undecided operations of ``kinds``."""
    execution = await deps.payrails.get_execution(execution_id)
    settled: list[tuple[int, OperationState]] = []
    async with deps.sessions.begin() as session:
        order = await lock_order(session, order_id=order_id)
        if order is None:
            return []
        rows = await operations_of(session, order.id)
        for kind in sorted(kinds):
            for operation_id, state, result in settled_from_execution(execution, kind, rows):
                outcome = await apply_and_announce(
                    session, order, operation_id, state, cause="sweep", result_code=result
                )
                applied = outcome.applied.value if outcome else "missing"
                metrics.OPERATIONS_RECONCILED.labels(kind.value, state.value, applied).inc()
                settled.append((operation_id, state))
    return settled


async def sweep_operations(deps: Deps) -> dict[int, OperationState]:
    """One pass over stuck operations; what each settled operation became, by id."""
    settings = deps.settings
    claims = await claim_stuck_operations(
        deps.sessions,
        stuck_after=settings.sweeper_operation_stuck_after_seconds,
        limit=settings.sweeper_batch_size,
    )
    by_order: dict[tuple[int, str], set[OperationKind]] = {}
    for claim in claims:
        by_order.setdefault((claim.order_id, claim.execution_id), set()).add(claim.kind)
    settled: dict[int, OperationState] = {}
    for (order_id, execution_id), kinds in by_order.items():
        with structlog.contextvars.bound_contextvars(execution_id=execution_id):
            try:
                done = await _settle_order(deps, order_id, kinds, execution_id)
            except (PayrailsError, InvalidPayload) as exc:
                log.warning("sweeper.operation_failed", error=type(exc).__name__, detail=str(exc))
                continue
            except Exception:  # the boundary of one order: log it, go on with the others
                log.exception("sweeper.operation_failed")
                continue
        settled.update(done)
        for operation_id, state in done:
            log.info("sweeper.operation_settled", operation_id=operation_id, state=state.value)
    if claims:
        log.info("sweeper.operations_pass", claimed=len(claims), settled=len(settled))
    return settled
