"""Place-order: pay the session's order, create the execution, hand authorize to the worker.

The order, its amount and its customer were set by the commerce backend (merchant API); the
request only brings the tokenized instrument, and any amount, reference or customer it still
carries (the seed's storefront body) must match the order's, or the request is refused.

Every step can be repeated by a retry of the same request and picks up where the last attempt
stopped: the ``create_execution`` idempotency key is
committed before the call, so Payrails answers a retry with the same execution; the move to
``authorizing`` commits only once the broker has confirmed the ``authorize`` command, so a
failed publish leaves the order ``created`` for the next attempt and a second request finds
``authorizing`` and publishes nothing.

A retry may carry a new ``paymentInstrumentId`` (the storefront tokenizes the card again on every
click). While the order is still ``created`` nothing has used the instrument yet, so the retry's
instrument replaces it under the row lock. Once the authorize is queued, the same instrument
again just reads the current state, and another one is a second payment attempt: refused with a
409 while the first is in flight, paid or in review; after a decline it starts the order's next
attempt (a new execution with its own keys, ``shared.payment_attempts``) until the order's
retry window (PAYMENT_RETRY_WINDOW_SECONDS after its creation) has passed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from sqlalchemy import select, update

from ingress.checkout.capture_mode import PAYRAILS_CAPTURE_MODES, fix_capture_mode
from ingress.checkout.order_views import OrderView, record_execution, view_by_reference
from ingress.checkout.service import (
    AttemptRefused,
    Checkout,
    CheckoutError,
    CustomerMismatch,
    OrderAlreadyPaid,
    OrderExpired,
    OrderMismatch,
    PaymentInFlight,
    PaymentsRejected,
    PaymentsUnavailable,
    PaymentUnderReview,
    TermsMismatch,
)
from ingress.checkout.validation import PlaceOrderRequest
from shared import metrics
from shared.checkout_sessions import BoundSession
from shared.commands import AuthorizeCommand
from shared.db.models import Order
from shared.errors import InvalidPayload
from shared.messaging import ROUTING_AUTHORIZE
from shared.order_store import (
    apply_observation,
    ensure_idempotency_key,
    lock_order,
    order_money,
    utcnow,
)
from shared.payment_attempts import attempt_operation, retry_window_closed, start_new_attempt
from shared.payrails.errors import PayrailsError, PayrailsTransientError
from shared.payrails.models import Execution, ExecutionOutcome
from shared.state_machine import RETRYABLE, UNRESOLVED, Cause, Observation, OrderStatus

log = structlog.get_logger(__name__)

CREATE_EXECUTION = "create_execution"
PLACE_ORDER_WAIT_WHILE = ("created", "authorizeRequested")
# How often a waiting place-order looks at the order, to see a denial or a webhook early.
ORDER_WATCH_SECONDS = 0.25
# Allowance on top of the long-poll timeout before we stop waiting for Payrails' answer.
POLL_GRACE_SECONDS = 5.0
# Pause before asking again after a transient poll failure (within the same deadline).
POLL_RETRY_SECONDS = 0.5


def _refuse_other_terms(order: Order, request: PlaceOrderRequest) -> None:
    """Refuse a request whose claims differ from the order's: the shop sets the terms."""
    reason: str | None = None
    error: CheckoutError | None = None
    if request.order_reference not in (None, order.reference):
        reason = "other_order"
        error = OrderMismatch("orderReference is not the order of this checkout session")
    elif request.amount is not None and request.amount != order_money(order):
        reason = "amount_mismatch"
        error = TermsMismatch(
            "the amount differs from the order's; the shop sets the price",
            details={"amount": order_money(order).to_json()},
        )
    elif request.customer_reference not in (None, order.customer_reference):
        reason = "customer_mismatch"
        error = CustomerMismatch("customerReference is not this order's customer")
    if error is not None and reason is not None:
        metrics.CHECKOUT_SESSION_REFUSALS.labels(reason).inc()
        log.warning("checkout.terms_refused", order_reference=order.reference, reason=reason)
        raise error


def _is_another_card(order: Order, request: PlaceOrderRequest) -> bool:
    """Whether the request pays an order whose attempt has started with another instrument."""
    return order.status is not OrderStatus.CREATED and (
        order.payment_instrument_id,
        order.payment_method_code,
    ) != (request.payment_instrument_id, request.payment_method_code)


def _refusal(order: Order, checkout: Checkout) -> AttemptRefused | None:
    """Why ``order`` may not start another payment attempt; None when it may."""
    details: dict[str, object] = {
        "orderReference": order.reference,
        "orderStatus": order.status.value,
    }
    if order.status is OrderStatus.PAID:
        return OrderAlreadyPaid("the order is paid; it is not paid twice", details=details)
    if order.status is OrderStatus.NEEDS_REVIEW:
        return PaymentUnderReview(
            "the order's payment outcome is being reviewed; it cannot be paid again",
            details=details,
        )
    if order.status not in RETRYABLE:
        return PaymentInFlight(
            "a payment of this order is in flight; wait for its outcome", details=details
        )
    window = checkout.settings.payment_retry_window_seconds
    if retry_window_closed(order, utcnow(), window):
        return OrderExpired("the order expired; it can no longer be paid", details=details)
    return None


def _take_instrument(order: Order, request: PlaceOrderRequest) -> None:
    """Use the retry's instrument while nothing has been authorized with the stored one."""
    if order.status is not OrderStatus.CREATED:
        return
    if (order.payment_instrument_id, order.payment_method_code) == (
        request.payment_instrument_id,
        request.payment_method_code,
    ):
        return
    order.payment_instrument_id = request.payment_instrument_id
    order.payment_method_code = request.payment_method_code
    log.info("checkout.instrument_replaced", order_reference=order.reference)


async def take_order(checkout: Checkout, bound: BoundSession, request: PlaceOrderRequest) -> Order:
    """Lock the session's order, refuse other terms, and take the request's instrument.

    An attempt on an order still ``created`` also restarts its ``updated_at``: the sweeper
    abandons a started order only SWEEPER_STUCK_AFTER_SECONDS after its last attempt, so a
    shopper still retrying (the broker could not take the authorize command, say) keeps it.
    """
    async with checkout.sessions.begin() as session:
        order = await lock_order(session, order_id=bound.order_id)
        assert order is not None  # the session row references it (ON DELETE CASCADE)
        _refuse_other_terms(order, request)
        if _is_another_card(order, request):
            refusal = _refusal(order, checkout)
            if refusal is not None:
                log.info(
                    "checkout.attempt_refused", order_reference=order.reference, code=refusal.code
                )
                raise refusal
            await start_new_attempt(session, order)
            log.info("checkout.new_attempt", order_reference=order.reference, attempt=order.attempt)
        _take_instrument(order, request)
        if order.status is OrderStatus.CREATED:
            order.updated_at = utcnow()
        return order


async def _create_execution(checkout: Checkout, order: Order) -> Execution:
    """Create the execution with the order's stored key and capture mode, committed before
    the call."""
    async with checkout.sessions.begin() as session:
        locked = await lock_order(session, order_id=order.id)
        assert locked is not None
        operation = attempt_operation(CREATE_EXECUTION, order.attempt)
        configured = checkout.settings.payrails_capture_mode
        mode = await fix_capture_mode(session, locked, configured, operation)
        key = await ensure_idempotency_key(session, order.id, operation)
    meta: dict[str, Any] = {
        "order": {"reference": order.reference},
        "customer": {"reference": order.customer_reference},
        "tags": {"channel": "web"},
    }
    try:
        return await checkout.payrails.create_execution(
            merchant_reference=order.reference,
            holder_reference=order.customer_reference,
            meta=meta,
            idempotency_key=key,
            capture_mode=PAYRAILS_CAPTURE_MODES[mode],
        )
    except PayrailsTransientError as exc:
        raise PaymentsUnavailable(
            "Payrails is unreachable; retry the same request to continue this order"
        ) from exc
    except PayrailsError as exc:
        raise PaymentsRejected(f"Payrails refused to create the execution ({exc.code})") from exc
    except InvalidPayload as exc:
        raise PaymentsRejected("Payrails answered create execution with no execution") from exc


async def ensure_execution(checkout: Checkout, order: Order) -> str:
    """The order's execution id, creating the attempt's execution at Payrails the first time."""
    if order.execution_id is not None:
        return order.execution_id
    execution = await _create_execution(checkout, order)
    async with checkout.sessions.begin() as session:
        await session.execute(
            update(Order)
            .where(
                Order.id == order.id,
                Order.attempt == order.attempt,
                Order.execution_id.is_(None),
            )
            .values(execution_id=execution.id)
        )
        stored = await session.scalar(select(Order.execution_id).where(Order.id == order.id))
    if stored is None:  # another request began a new attempt (another card) meanwhile
        raise PaymentInFlight(
            "another payment attempt of this order began meanwhile; wait for its outcome",
            details={"orderReference": order.reference},
        )
    return stored


async def start_authorize(checkout: Checkout, order_id: int, execution_id: str) -> bool:
    """Move created -> authorizing and publish the command, both or neither; True if published."""
    async with checkout.sessions.begin() as session:
        order = await lock_order(session, order_id=order_id)
        # A request that read the order before another one started a new attempt holds the
        # old attempt's execution: it must not move the new attempt with a command for that one.
        if (
            order is None
            or order.status is not OrderStatus.CREATED
            or order.execution_id != execution_id
        ):
            return False
        command = AuthorizeCommand(order.reference, execution_id)
        await apply_observation(
            session, order, Observation(OrderStatus.AUTHORIZING), Cause.PLACE_ORDER
        )
        await checkout.send_command(
            ROUTING_AUTHORIZE,
            command.to_body(),
            command.message_id,
            refusal="the authorize command could not be queued; retry the same request",
        )
    log.debug("checkout.authorize_queued", order_reference=command.order_reference)
    return True


class PayrailsUnreachable(Exception):
    """Every poll of the execution failed transiently: Payrails did not answer at all."""


async def _watch_order(checkout: Checkout, reference: str) -> None:
    """Return once another path (hook denial, webhook) has resolved the order."""
    while True:
        await asyncio.sleep(ORDER_WATCH_SECONDS)
        view = await view_by_reference(checkout.sessions, reference)
        if view is not None and view.status not in UNRESOLVED:
            return


async def _poll(checkout: Checkout, execution_id: str) -> Execution | None:
    """Long-poll the execution out of its pre-authorize states until our own deadline.

    Payrails may end a long-poll before our timeout; we ask again with the time left. A
    transient failure (Payrails briefly down) is retried within the same deadline. Raises
    PayrailsUnreachable when no attempt got through before the deadline.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + checkout.settings.checkout_poll_timeout_seconds
    execution: Execution | None = None
    unreachable: PayrailsTransientError | None = None
    while (remaining := deadline - loop.time()) > 0:
        try:
            execution = await checkout.payrails.get_execution(
                execution_id, wait_while=PLACE_ORDER_WAIT_WHILE, timeout=remaining
            )
        except PayrailsTransientError as exc:
            log.warning("checkout.poll_retrying", error=repr(exc))
            unreachable = exc if execution is None else None
            await asyncio.sleep(min(POLL_RETRY_SECONDS, max(deadline - loop.time(), 0)))
            continue
        except (PayrailsError, InvalidPayload) as exc:
            log.warning("checkout.poll_failed", error=repr(exc))
            return execution
        if execution.outcome is not ExecutionOutcome.PENDING:
            return execution
        await asyncio.sleep(min(ORDER_WATCH_SECONDS, max(deadline - loop.time(), 0)))
    if execution is None and unreachable is not None:
        raise PayrailsUnreachable from unreachable
    return execution


async def await_outcome(checkout: Checkout, reference: str, execution_id: str) -> None:
    """Wait for the poll or another path to resolve the order; record what the poll saw.

    Returns early, with nothing recorded, when the app is shutting down: the authorize is
    queued already, so the shopper is told ``processing`` and the order completes anyway.
    """
    poll = asyncio.create_task(_poll(checkout, execution_id))
    watch = asyncio.create_task(_watch_order(checkout, reference))
    stopping = asyncio.create_task(checkout.stopping.wait())
    limit = checkout.settings.checkout_poll_timeout_seconds + POLL_GRACE_SECONDS
    try:
        await asyncio.wait(
            {poll, watch, stopping}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in (poll, watch, stopping):
            task.cancel()
        await asyncio.gather(poll, watch, stopping, return_exceptions=True)
    if not poll.done() or poll.cancelled():
        return
    execution = poll.result()  # re-raises what is not a PayrailsError: a bug, not an outcome
    if execution is not None:
        await record_execution(checkout.sessions, execution, Cause.POLL)


async def place_order(
    checkout: Checkout, bound: BoundSession, request: PlaceOrderRequest
) -> OrderView:
    """The whole place-order flow; returns the order as it stands when the answer is known.

    Payrails unreachable for the whole poll, with nothing else having resolved the order, is a
    503: the authorize is queued, so the same request again (or the order's status) continues.
    """
    order = await take_order(checkout, bound, request)
    execution_id = await ensure_execution(checkout, order)
    await start_authorize(checkout, order.id, execution_id)
    view = await view_by_reference(checkout.sessions, order.reference)
    if view is not None and view.status in UNRESOLVED:
        unreachable = False
        try:
            await await_outcome(checkout, order.reference, execution_id)
        except PayrailsUnreachable:
            unreachable = True
        view = await view_by_reference(checkout.sessions, order.reference)
        if unreachable and view is not None and view.status in UNRESOLVED:
            raise PaymentsUnavailable(
                "Payrails did not answer while the order was being authorized; the "
                "authorization is queued: retry the same request or read the order's status",
                details={"orderReference": order.reference, "executionId": execution_id},
            )
    assert view is not None
    return view
