"""Helpers that drive a card through the sandbox with the real client."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sandbox.control_client import SandboxHandle
from shared.money import Money
from shared.payrails.client import PayrailsClient
from shared.payrails.models import Execution

APPROVE = "4242 4242 4242 4242"
CHALLENGE = "4000 0000 0000 3220"
DECLINE = "4000 0000 0000 9995"
CASCADE = "4000 0027 6000 3184"
UNKNOWN = "4000 0000 0000 0119"
AMOUNT = Money(Decimal("12.50"), "EUR")
PRE_AUTHORIZE = ("created", "authorizeRequested")


async def new_execution(payrails: PayrailsClient) -> Execution:
    reference = f"order-{uuid.uuid4().hex[:10]}"
    return await payrails.create_execution(
        merchant_reference=reference,
        holder_reference="customer-1",
        meta={"order": {"reference": reference}, "customer": {"reference": "customer-1"}},
        idempotency_key=uuid.uuid4(),
    )


async def instrument_for(payrails: PayrailsClient, sandbox: SandboxHandle, card: str) -> str:
    init = await payrails.client_init(
        holder_reference="customer-1", init_type="secureFields", idempotency_key=uuid.uuid4()
    )
    return await sandbox.tokenize(init, card)


def return_url(execution_id: str) -> str:
    return f"https://shop.example/payment-return/{execution_id}"


async def authorize_card(payrails: PayrailsClient, sandbox: SandboxHandle, card: str) -> Execution:
    """Create, authorize, and long-poll past the pre-authorize statuses."""
    instrument = await instrument_for(payrails, sandbox, card)
    execution = await new_execution(payrails)
    await payrails.authorize(
        execution.id,
        amount=AMOUNT,
        payment_instrument_id=instrument,
        payment_method_code="card",
        return_url=return_url(execution.id),
        idempotency_key=uuid.uuid4(),
    )
    return await payrails.get_execution(execution.id, wait_while=PRE_AUTHORIZE)
