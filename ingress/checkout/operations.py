"""The merchant API's capture, cancel and refund: stored in one transaction, then handed over.

``POST /merchant/orders/{reference}/captures|cancel|refunds`` takes an ``Idempotency-Key`` (the
command id). The operation is stored with its Payrails idempotency key under the order's row
lock (``shared.operation_intake``); after the commit the confirmed ``operation.execute`` hands it
to the worker, and the answer is 202 with the operation and the order's money picture. Payrails
is never called here. A request the money rules refuse stores nothing (409/422); a broker that
does not confirm is a 503 with ``Retry-After``: the operation stays ``requested`` and the same
request again sends it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from ingress.checkout.keys import API_KEYS, CHECKOUT
from ingress.checkout.merchant_auth import require_merchant
from ingress.checkout.requests import invalid, json_body
from ingress.checkout.service import CheckoutError, OrderNotFound
from shared import metrics
from shared.messaging import ROUTING_EXECUTE_OPERATION
from shared.money_requests import MoneyRuleError
from shared.operation_intake import (
    ExecuteOperation,
    Taken,
    parse_operation_request,
    take_request,
    valid_command_id,
)
from shared.operation_states import OperationKind
from shared.operation_store import OrderNotFound as NoSuchOrder
from shared.request_logging import set_outcome
from shared.validation import REFERENCE, REFERENCE_MAX

log = structlog.get_logger(__name__)

IDEMPOTENCY_KEY = "Idempotency-Key"
RETRY_AFTER_SECONDS = 2  # the broker's reconnect begins within a second


class IdempotencyKeyInvalid(
    CheckoutError,
    status=400,
    code="idempotency_key_invalid",
    title="Idempotency-Key required",
):
    """No Idempotency-Key, or not a UUID or plain token of up to 64 characters."""


class OperationRefused(CheckoutError, status=409, code="money_rule", title="Operation refused"):
    """A money rule refuses the operation: the rule's own status (409/422) and code."""

    def __init__(self, error: MoneyRuleError) -> None:
        super().__init__(str(error))
        self.status = error.status
        self.code = error.code


async def publish_execute(request: web.Request, execute: ExecuteOperation) -> None:
    """Hand the stored operation to the worker: confirmed, persistent, mandatory."""
    await request.app[CHECKOUT].send_command(
        ROUTING_EXECUTE_OPERATION,
        execute.to_body(),
        execute.message_id,
        refusal="the operation is stored but could not be handed over; retry the same request "
        "with the same Idempotency-Key",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _request(request: web.Request, kind: OperationKind) -> web.Response:
    require_merchant(request, request.app[API_KEYS])
    reference = request.match_info["reference"]
    if len(reference) > REFERENCE_MAX or not REFERENCE.match(reference):
        raise OrderNotFound("no order has this reference")
    command_id = valid_command_id(request.headers.get(IDEMPOTENCY_KEY))
    if command_id is None:
        metrics.OPERATIONS_REFUSED.labels("http", kind.value, "idempotency_key_invalid").inc()
        raise IdempotencyKeyInvalid(
            "send an Idempotency-Key header: a UUID or a token of letters, digits and . _ : - "
            "of up to 64 characters"
        )
    parsed = parse_operation_request(kind, await json_body(request))
    if isinstance(parsed, list):
        metrics.OPERATIONS_REFUSED.labels("http", kind.value, "invalid").inc()
        return invalid(request, parsed)
    try:
        async with request.app[CHECKOUT].sessions.begin() as session:
            taken: Taken = await take_request(session, reference, parsed, command_id)
            body = taken.to_json()
    except NoSuchOrder as exc:
        metrics.OPERATIONS_REFUSED.labels("http", kind.value, "not_found").inc()
        raise OrderNotFound("no order has this reference") from exc
    except MoneyRuleError as exc:
        metrics.OPERATIONS_REFUSED.labels("http", kind.value, exc.code).inc()
        log.info("merchant.operation_refused", kind=kind.value, code=exc.code)
        raise OperationRefused(exc) from exc
    if taken.execute is not None:
        await publish_execute(request, taken.execute)
    outcome = "requested" if taken.created else "repeated"
    metrics.OPERATIONS_REQUESTED.labels("http", kind.value, outcome).inc()
    log.info("merchant.operation", kind=kind.value, order_reference=reference, outcome=outcome)
    set_outcome(request, outcome)
    response = web.json_response(body, status=202)
    response.headers["Cache-Control"] = "no-store"
    return response


def _handler(kind: OperationKind) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        return await _request(request, kind)

    handle.__name__ = f"request_{kind.value}"
    handle.__doc__ = f"POST a {kind.value} of the order: 202 with the operation."
    return handle


request_capture = _handler(OperationKind.CAPTURE)
request_cancel = _handler(OperationKind.CANCEL)
request_refund = _handler(OperationKind.REFUND)
