"""The authorize consumer: the pre-authorize hook, then POST authorize with the stored key.

Outcomes: ``authorized`` (Payrails acknowledged), ``denied`` (the hook said no: the order is
``payment_failed``), ``skipped`` (the order is past authorizing, or was acknowledged already),
``refused`` (Payrails refused the request outright, an unknown instrument say: the order is
``payment_failed``), ``rejected`` (an answer a retry will not change but that does not prove
nothing happened: the order goes to ``needs_review``), ``retried`` and ``dead_lettered``
(transient failures, then the parking lot after the last delay tier).

An order is never authorized twice: only an order still ``created`` or ``authorizing`` is
authorized, for the execution of its current payment attempt, under its row lock; the attempt's
``authorize`` idempotency key is committed before the call
and reused on every retry; and once Payrails has acknowledged, the key is marked completed so a
redelivered command is skipped.
"""

from __future__ import annotations

import time
import uuid
from enum import StrEnum

import structlog
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy import select, update

from shared import metrics
from shared.commands import AuthorizeCommand
from shared.db.failover import MAYBE_TRANSIENT, is_transient
from shared.db.models import IdempotencyKey, Order
from shared.errors import InvalidPayload, PublishError
from shared.order_store import (
    apply_observation,
    ensure_idempotency_key,
    lock_order,
    order_money,
    utcnow,
)
from shared.payment_attempts import AUTHORIZE_OPERATION, attempt_operation, authorize_key
from shared.payrails.errors import PayrailsError, PayrailsTransientError, is_definite_refusal
from shared.state_machine import AUTHORIZABLE, Cause, Observation, OrderStatus
from worker.deps import Deps
from worker.preauthorize import AllowAll, Decision, PreAuthorizeHook
from worker.retry import dead_letter, retry_later

log = structlog.get_logger(__name__)


class AuthorizeOutcome(StrEnum):
    AUTHORIZED = "authorized"
    DENIED = "denied"
    SKIPPED = "skipped"
    REFUSED = "refused"
    REJECTED = "rejected"
    RETRIED = "retried"
    DEAD_LETTERED = "dead_lettered"


def return_url(deps: Deps, execution_id: str) -> str:
    """Where the 3-D Secure challenge sends the shopper back (returnInfo.success)."""
    return f"{deps.settings.public_base_url}/payment-return/{execution_id}"


def _is_authorizable(order: Order, command: AuthorizeCommand) -> bool:
    return (
        order.status in AUTHORIZABLE
        and order.execution_id == command.execution_id
        and order.payment_instrument_id is not None
        and order.payment_method_code is not None
    )


async def _load(deps: Deps, command: AuthorizeCommand) -> Order | None:
    """The order if it may still be authorized, read without a lock for the hook."""
    async with deps.sessions.begin() as session:
        order = await session.scalar(
            select(Order).where(Order.reference == command.order_reference)
        )
        if order is None or not _is_authorizable(order, command):
            return None
        key = await authorize_key(session, order)
        if key is not None and key.completed_at is not None:  # acknowledged already
            return None
        return order


async def _decide(
    deps: Deps, order_id: int, command: AuthorizeCommand, decision: Decision
) -> tuple[AuthorizeOutcome, Order | None, uuid.UUID | None]:
    """Under the row lock: record a denial, or commit the key and the authorizing state."""
    async with deps.sessions.begin() as session:
        order = await lock_order(session, order_id=order_id)
        if order is None or not _is_authorizable(order, command):
            return AuthorizeOutcome.SKIPPED, None, None
        if not decision.allowed:
            reason = decision.reason or "denied by pre-authorize checks"
            observed = Observation(OrderStatus.PAYMENT_FAILED, reason=reason)
            await apply_observation(session, order, observed, Cause.PRE_AUTHORIZE)
            return AuthorizeOutcome.DENIED, None, None
        operation = attempt_operation(AUTHORIZE_OPERATION, order.attempt)
        key = await ensure_idempotency_key(session, order.id, operation)
        await apply_observation(
            session, order, Observation(OrderStatus.AUTHORIZING), Cause.AUTHORIZE
        )
        return AuthorizeOutcome.AUTHORIZED, order, key


async def _mark_completed(deps: Deps, order_id: int, attempt: int) -> None:
    async with deps.sessions.begin() as session:
        await session.execute(
            update(IdempotencyKey)
            .where(
                IdempotencyKey.order_id == order_id,
                IdempotencyKey.operation == attempt_operation(AUTHORIZE_OPERATION, attempt),
            )
            .values(completed_at=utcnow())
        )


async def authorize_order(
    deps: Deps, command: AuthorizeCommand, hook: PreAuthorizeHook
) -> AuthorizeOutcome:
    """Run the hook, then authorize at Payrails once; raises TransientError to retry."""
    candidate = await _load(deps, command)
    if candidate is None:
        return AuthorizeOutcome.SKIPPED
    decision = await hook.check(candidate)
    outcome, order, key = await _decide(deps, candidate.id, command, decision)
    if outcome is not AuthorizeOutcome.AUTHORIZED or order is None or key is None:
        return outcome
    assert order.payment_instrument_id is not None
    assert order.payment_method_code is not None
    try:
        await deps.payrails.authorize(
            command.execution_id,
            amount=order_money(order),
            payment_instrument_id=order.payment_instrument_id,
            payment_method_code=order.payment_method_code,
            return_url=return_url(deps, command.execution_id),
            idempotency_key=key,
        )
    except PayrailsTransientError:
        raise
    except (PayrailsError, InvalidPayload) as exc:
        return await _settle_refusal(deps, order.id, exc)
    await _mark_completed(deps, order.id, order.attempt)
    return outcome


MAX_LABEL_CHARS = 120  # Payrails' code is theirs: keep what lands in failure_reason bounded


def refusal_observation(exc: PayrailsError | InvalidPayload) -> Observation:
    """What a final (not transient) answer to the authorize says about the order.

    ``payment_failed`` only when the answer proves Payrails did not act on the request, so no
    money can have moved: a refusal status such as 400, 404 or 422 for an unknown or foreign
    instrument or an invalid body (``is_definite_refusal``). A made-up instrument id therefore
    fails the payment and pages nobody.

    ``needs_review`` wherever the answer cannot prove that: a 2xx answer we cannot read (the
    authorize may well have been accepted), a timed-out, canceled or conflicting request, an
    action not allowed in the execution's state (it may have been authorized already), a result
    of the unknown family, or a status outside the known refusals. An operator settles those;
    nothing is retried by itself.
    """
    if isinstance(exc, PayrailsError) and is_definite_refusal(exc):
        label = _label(exc)
        return Observation(OrderStatus.PAYMENT_FAILED, reason=f"authorize refused: {label}")
    label = _label(exc) if isinstance(exc, PayrailsError) else "unreadable answer"
    return Observation(OrderStatus.NEEDS_REVIEW, reason=f"authorize outcome unknown: {label}")


def _label(exc: PayrailsError) -> str:
    """Payrails' code (or the HTTP status), with the operation results it named, if any."""
    label = exc.code or str(exc.status)
    if exc.results:
        label += f" ({', '.join(exc.results)})"
    return label[:MAX_LABEL_CHARS]


async def _settle_refusal(
    deps: Deps, order_id: int, exc: PayrailsError | InvalidPayload
) -> AuthorizeOutcome:
    """Record a final answer with cause authorize: a failed payment, or one for review."""
    observed = refusal_observation(exc)
    if observed.status is OrderStatus.PAYMENT_FAILED:
        log.warning("authorize.refused", error=repr(exc))
        outcome = AuthorizeOutcome.REFUSED
    else:
        log.error("authorize.rejected", error=repr(exc))
        outcome = AuthorizeOutcome.REJECTED
    async with deps.sessions.begin() as session:
        order = await lock_order(session, order_id=order_id)
        if order is not None:
            await apply_observation(session, order, observed, Cause.AUTHORIZE)
    return outcome


async def _process(
    message: AbstractIncomingMessage, deps: Deps, hook: PreAuthorizeHook
) -> AuthorizeOutcome:
    """One command to one outcome; retry and dead-letter hand-offs are confirmed publishes."""
    queue = deps.names.authorize_queue
    try:
        command = AuthorizeCommand.from_body(message.body)
    except InvalidPayload:
        await dead_letter(message, deps, source_queue=queue, reason="invalid_payload")
        return AuthorizeOutcome.DEAD_LETTERED
    try:
        with structlog.contextvars.bound_contextvars(
            order_reference=command.order_reference, execution_id=command.execution_id
        ):
            return await authorize_order(deps, command, hook)
    except MAYBE_TRANSIENT as exc:
        if not is_transient(exc):
            raise
        log.warning("authorize.transient_failure", error=type(exc).__name__)
        result = await retry_later(message, deps, source_queue=queue, reason="transient")
        return AuthorizeOutcome(result)


async def handle_authorize(
    message: AbstractIncomingMessage, deps: Deps, *, hook: PreAuthorizeHook | None = None
) -> None:
    """Consume one authorize command; ack only after the outcome is durable."""
    started = time.perf_counter()
    async with message.process(requeue=False, ignore_processed=True):
        with structlog.contextvars.bound_contextvars(
            message_id=message.message_id, redelivered=message.redelivered
        ):
            try:
                outcome = await _process(message, deps, hook or AllowAll())
            except PublishError:
                log.warning("authorize.handoff_failed")
                await message.nack(requeue=True)
                return
            await message.ack()
            metrics.AUTHORIZE_COMMANDS.labels(outcome.value).inc()
            log.info(
                "authorize.finished",
                outcome=outcome.value,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )
