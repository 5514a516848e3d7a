"""An unknown PSP outcome goes to needs_review and never leads to a second authorize."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.commands import AuthorizeCommand
from shared.db.models import Order
from shared.messaging import (
    ROUTING_AUTHORIZE,
    connect_robust,
    persistent_properties,
    publish_frames,
)
from tests.waiting import sample, wait_until
from tests.worker.conftest import (
    UNKNOWN,
    QueueDriver,
    Shop,
    new_reference,
    order_status,
    running_worker,
)
from worker.__main__ import build_consumer
from worker.deps import Deps


def authorize_commands(outcome: str) -> float:
    """The current value of recon_authorize_commands_total for one outcome."""
    return sample("recon_authorize_commands_total", outcome=outcome)


@contextlib.asynccontextmanager
async def running_authorize(deps: Deps) -> AsyncIterator[None]:
    """The authorize consumer as the worker builds it, on a connection of its own."""
    own = await connect_robust(deps.settings.amqp_url.reveal())
    channel = await own.channel(publisher_confirms=False)
    consumer = build_consumer("authorize", deps, channel)
    await consumer.start()
    try:
        yield
    finally:
        await consumer.stop()
        await own.close()


async def authorizing_order(shop: Shop, card: str) -> AuthorizeCommand:
    """An execution and an authorizing order holding its instrument, as the checkout leaves it."""
    reference = new_reference()
    execution = await shop.payrails.create_execution(
        merchant_reference=reference,
        holder_reference="cust_1",
        meta={},
        idempotency_key=uuid.uuid4(),
    )
    init = await shop.payrails.client_init(
        holder_reference="cust_1", init_type="secureFields", idempotency_key=uuid.uuid4()
    )
    instrument = await shop.sandbox.tokenize(init, card)
    async with shop.sessions.begin() as session:
        session.add(
            Order(
                reference=reference,
                customer_reference="cust_1",
                amount_value=Decimal("12.50"),
                currency="EUR",
                status="authorizing",
                execution_id=execution.id,
                payment_instrument_id=instrument,
                payment_method_code="card",
            )
        )
    return AuthorizeCommand(reference, execution.id)


async def publish_command(broker: QueueDriver, command: AuthorizeCommand) -> None:
    """Publish to payments.commands as the checkout does: persistent, stable id, confirmed."""
    properties = persistent_properties(message_id=command.message_id, headers={})
    await publish_frames(
        broker.channel,
        broker.names.commands_exchange,
        ROUTING_AUTHORIZE,
        command.to_body(),
        properties,
        timeout=5,
    )


@pytest.mark.usefixtures("webhook_ingress")
async def test_redelivered_authorize_after_unknown_outcome_never_authorizes_again(
    shop: Shop,
    sandbox_deps: Deps,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    command = await authorizing_order(shop, UNKNOWN)
    reference = command.order_reference
    authorized = authorize_commands("authorized")
    skipped = authorize_commands("skipped")

    async with running_worker(sandbox_deps), running_authorize(sandbox_deps):
        await publish_command(broker, command)

        async def first_done() -> bool:
            return (
                authorize_commands("authorized") == authorized + 1
                and await order_status(sessions, reference) == "needs_review"
            )

        await wait_until(first_done)
        await publish_command(broker, command)

        async def redelivery_done() -> bool:
            return authorize_commands("skipped") == skipped + 1

        await wait_until(redelivery_done)
        messages = await broker.settled_messages_for(sessions, {reference})
        stats = await shop.sandbox.stats()

    assert stats["authorizesExecuted"] == {command.execution_id: 1}
    assert stats["requests"]["authorize"] == 1  # not even a refused or replayed second call
    assert await order_status(sessions, reference) == "needs_review"
    assert [m["_routing_key"] for m in messages] == ["order.needs_review"]
