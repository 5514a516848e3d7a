"""What the checkout's service logic needs, built once per app, and the errors it raises."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ingress.publishing import PublisherBase
from shared.config import CheckoutSettings
from shared.errors import PublishError, ReconError
from shared.messaging import Names
from shared.payrails.client import PayrailsClient


@dataclass(frozen=True)
class Checkout:
    """Settings, names, the session factory, the Payrails client and the command publisher.

    ``stopping`` is set when the app begins to shut down: long waits end early on it.
    """

    settings: CheckoutSettings
    names: Names
    sessions: async_sessionmaker[AsyncSession]
    payrails: PayrailsClient
    broker: PublisherBase
    stopping: asyncio.Event

    async def send_command(
        self,
        routing_key: str,
        body: bytes,
        message_id: str,
        *,
        refusal: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Publish a command on the commands exchange, confirmed; BrokerUnavailable (503, with
        ``refusal`` and ``headers``) when the broker does not take it."""
        try:
            await self.broker.publish(
                self.names.commands_exchange, routing_key, body, message_id=message_id, headers={}
            )
        except PublishError as exc:
            raise BrokerUnavailable(refusal, headers=headers) from exc


class CheckoutError(ReconError):
    """A request the checkout answers with an error status and a stable error code.

    ``headers`` go on the response (``Retry-After``, ``WWW-Authenticate``).
    """

    status = 500
    code = "internal_error"
    title = "Internal error"

    def __init_subclass__(
        cls, *, status: int | None = None, code: str | None = None, title: str | None = None
    ) -> None:
        """``class Gone(CheckoutError, status=410, code="gone", title="Gone")``."""
        super().__init_subclass__()
        cls.status = status if status is not None else cls.status
        cls.code = code if code is not None else cls.code
        cls.title = title if title is not None else cls.title

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


class OrderConflict(
    CheckoutError, status=409, code="order_conflict", title="Order exists with other terms"
):
    """The reference exists with another amount, currency or customer."""


class MerchantUnauthorized(
    CheckoutError, status=401, code="unauthorized", title="Merchant API key required"
):
    """No valid merchant API key."""


class SessionRequired(
    CheckoutError, status=401, code="checkout_session_required", title="Checkout session required"
):
    """No valid checkout session: the shopper must come from the shop."""


class OrderMismatch(
    CheckoutError, status=403, code="order_mismatch", title="Not this session's order"
):
    """The request names another order than the session is bound to."""


class TermsMismatch(
    CheckoutError, status=409, code="amount_mismatch", title="The order's terms are set by the shop"
):
    """The request's amount or customer differs from the session's order."""


class CustomerMismatch(TermsMismatch, code="customer_mismatch"):
    """The request's customer differs from the session's order."""


class PaymentsUnavailable(
    CheckoutError, status=503, code="payrails_unavailable", title="Payrails unavailable"
):
    """Payrails could not be reached; the same request can be retried."""


class PaymentsRejected(
    CheckoutError, status=502, code="payrails_rejected", title="Payrails refused"
):
    """Payrails refused the call for a reason a retry will not change."""


class BrokerUnavailable(
    CheckoutError, status=503, code="broker_unavailable", title="Broker unavailable"
):
    """The authorize command could not be handed to the broker; retry the same request."""


class OrderNotFound(CheckoutError, status=404, code="not_found", title="Not found"):
    """No order with this reference or execution id."""


class AttemptRefused(
    CheckoutError, status=409, code="payment_attempt_refused", title="No new payment attempt"
):
    """Another card for an order that may not start a new payment attempt."""


class PaymentInFlight(AttemptRefused, code="payment_in_flight", title="A payment is in flight"):
    """The order's current attempt is being authorized or awaits the shopper's 3-D Secure."""


class OrderAlreadyPaid(AttemptRefused, code="order_already_paid", title="The order is paid"):
    """The order is paid: it is paid at most once."""


class PaymentUnderReview(
    AttemptRefused, code="payment_under_review", title="The payment is under review"
):
    """The order's payment outcome is unknown: a person settles it, nobody pays again."""


class OrderExpired(AttemptRefused, code="order_expired", title="The order can no longer be paid"):
    """The order's retry window (PAYMENT_RETRY_WINDOW_SECONDS) has passed."""
