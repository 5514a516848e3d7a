"""``order.create`` over RabbitMQ: executed once per commandId, answered on the orders exchange."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.checkout_sessions import resolve_session
from shared.commands import CreateOrderCommand
from shared.db.models import CheckoutSession, MerchantCommand, Order
from shared.db.session import create_engine, create_sessionmaker
from shared.merchant_orders import create_order
from shared.messaging import (
    ROUTING_CREATE_ORDER,
    connect_robust,
    persistent_properties,
    publish_frames,
)
from shared.order_store import lock_order
from tests.waiting import sample, wait_until
from tests.worker.conftest import QueueDriver, new_reference
from tests.worker.test_asyncapi import check
from worker.consumer import HandlerConsumer
from worker.deps import Deps
from worker.merchant import (
    answer_message_id,
    create_order_from_command,
    handle_merchant_command,
)
from worker.outbox import OutboxRelay


def command(reference: str, value: str = "129.90", command_id: str | None = None) -> dict[str, Any]:
    return {
        "commandId": command_id or str(uuid.uuid4()),
        "orderReference": reference,
        "amount": {"value": value, "currency": "EUR"},
        "customerReference": "customer-7",
    }


async def send(broker: QueueDriver, body: dict[str, Any] | bytes) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    message_id = str(uuid.uuid4()) if isinstance(body, bytes) else body["commandId"]
    await publish_frames(
        broker.channel,
        broker.names.commands_exchange,
        ROUTING_CREATE_ORDER,
        raw,
        persistent_properties(message_id=message_id, headers={}),
        timeout=5,
    )


@contextlib.asynccontextmanager
async def merchant_worker(deps: Deps) -> AsyncIterator[None]:
    """The merchant-commands consumer and the outbox relay, in this process."""
    own = await connect_robust(deps.settings.amqp_url.reveal())
    channel = await own.channel(publisher_confirms=False)
    consumer = HandlerConsumer(
        deps, channel, deps.names.merchant_commands_queue, handle_merchant_command
    )
    stop = asyncio.Event()
    relay = asyncio.create_task(OutboxRelay(deps).run(stop))
    await consumer.start()
    try:
        yield
    finally:
        await consumer.stop()
        stop.set()
        await relay
        await own.close()


def about(reference: str) -> Callable[[AbstractIncomingMessage], bool]:
    """Only the answers about ``reference``: the relay also sends what other tests left pending."""
    return lambda message: json.loads(message.body).get("orderReference") == reference


async def count(sessions: async_sessionmaker[AsyncSession], model: Any, **where: Any) -> int:
    async with sessions() as session:
        query = select(func.count()).select_from(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return int(await session.scalar(query) or 0)


async def test_a_create_command_creates_the_order_and_answers_with_a_checkout_session(
    deps: Deps, broker: QueueDriver, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference = new_reference()
    body = command(reference)
    async with merchant_worker(deps):
        await send(broker, body)
        (answer,) = await broker.wait_for(broker.orders.name, 1, keep=about(reference))
    message = json.loads(answer.body)
    assert answer.routing_key == "order.created"
    assert answer.message_id == answer_message_id(body["commandId"])
    assert message["commandId"] == body["commandId"]
    assert message["amount"] == {"value": "129.90", "currency": "EUR"}
    token = message["checkoutSession"]["token"]
    assert message["checkoutSession"]["checkoutUrl"].endswith(f"/checkout/start?session={token}")
    async with sessions.begin() as session:
        bound = await resolve_session(session, token)
    assert bound is not None
    assert bound.order_reference == reference


async def test_a_repeated_command_is_answered_again_and_never_executed_twice(
    deps: Deps, broker: QueueDriver, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference = new_reference()
    body = command(reference)
    async with merchant_worker(deps):
        await send(broker, body)
        (first,) = await broker.wait_for(broker.orders.name, 1, keep=about(reference))
        await send(broker, body)
        (again,) = await broker.wait_for(broker.orders.name, 1, keep=about(reference))
    assert again.message_id == first.message_id
    assert json.loads(again.body) == json.loads(first.body)
    assert await count(sessions, Order, reference=reference) == 1
    assert await count(sessions, MerchantCommand, command_id=body["commandId"]) == 1
    async with sessions() as session:
        order_id = await session.scalar(select(Order.id).where(Order.reference == reference))
    assert await count(sessions, CheckoutSession, order_id=order_id) == 1


def lock_waiters(
    sessions: async_sessionmaker[AsyncSession], expected: int
) -> Callable[[], Awaitable[bool]]:
    """Whether ``expected`` connections to this test database wait for a lock."""

    async def waiting() -> bool:
        async with sessions() as session:
            found = await session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        return found == expected

    return waiting


async def test_a_repeat_delivered_while_the_command_runs_is_answered_again_not_run_twice(
    deps: Deps, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A backend that publishes again before the first delivery is done, or two workers."""
    body = command(new_reference())
    parsed = CreateOrderCommand.from_body(json.dumps(body).encode(), None)
    async with sessions.begin() as session:
        await create_order(session, parsed.terms)
    # The order's row lock, held here, keeps the first delivery in flight while both run.
    async with sessions.begin() as holder:
        await lock_order(holder, reference=parsed.terms.reference)
        runs = [asyncio.create_task(create_order_from_command(deps, parsed)) for _ in range(2)]
        await wait_until(lock_waiters(sessions, 2))
    outcomes = await asyncio.gather(*runs)
    assert sorted(outcomes) == ["answered_again", "repeated"]
    assert await count(sessions, MerchantCommand, command_id=body["commandId"]) == 1
    async with sessions() as session:
        order_id = await session.scalar(
            select(Order.id).where(Order.reference == parsed.terms.reference)
        )
    assert await count(sessions, CheckoutSession, order_id=order_id) == 1


async def test_the_same_terms_under_a_new_command_id_answer_created_for_the_same_order(
    deps: Deps, broker: QueueDriver, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference = new_reference()
    first_body, second_body = command(reference), command(reference)
    async with merchant_worker(deps):
        await send(broker, first_body)
        (first,) = await broker.wait_for(broker.orders.name, 1, keep=about(reference))
        await send(broker, second_body)
        (second,) = await broker.wait_for(broker.orders.name, 1, keep=about(reference))
    assert (first.routing_key, second.routing_key) == ("order.created", "order.created")
    assert second.message_id == answer_message_id(second_body["commandId"]) != first.message_id
    assert json.loads(second.body)["checkoutSession"] is not None
    assert await count(sessions, Order, reference=reference) == 1


async def test_a_command_with_other_terms_for_a_reference_is_rejected_and_changes_nothing(
    deps: Deps, broker: QueueDriver, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference = new_reference()
    async with merchant_worker(deps):
        await send(broker, command(reference, "129.90"))
        await broker.wait_for(broker.orders.name, 1, keep=about(reference))
        await send(broker, command(reference, "0.01"))
        (answer,) = await broker.wait_for(broker.orders.name, 1, keep=about(reference))
    message = json.loads(answer.body)
    assert answer.routing_key == "order.rejected"
    assert message["reason"] == "order_conflict"
    assert message["fields"] == ["amount.value"]
    assert message["amount"] == {"value": "129.90", "currency": "EUR"}
    async with sessions() as session:
        stored = await session.scalar(
            select(Order.amount_value).where(Order.reference == reference)
        )
    assert stored is not None
    assert str(stored.normalize()) == "129.9"


async def test_an_invalid_command_goes_to_the_dead_letters_without_an_order(
    deps: Deps, broker: QueueDriver, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference = new_reference()
    body = command(reference, "-5")
    async with merchant_worker(deps):
        await send(broker, body)
        (dead,) = await broker.wait_for(broker.names.dead_letters_queue, 1)
    assert json.loads(dead.body)["orderReference"] == reference
    assert await count(sessions, Order, reference=reference) == 0


async def test_both_answers_validate_against_the_documented_schema(
    deps: Deps, broker: QueueDriver
) -> None:
    reference = new_reference()
    async with merchant_worker(deps):
        await send(broker, command(reference, "129.90"))
        await send(broker, command(reference, "99.00"))
        answers = await broker.wait_for(broker.orders.name, 2, keep=about(reference))
    bodies = [json.loads(answer.body) for answer in answers]
    assert sorted(body["type"] for body in bodies) == ["order.created", "order.rejected"]
    assert [check(body, "CommandAnswer") for body in bodies] == [[], []]


async def test_a_command_meeting_a_pool_with_every_connection_busy_is_retried_not_dead_lettered(
    deps: Deps, broker: QueueDriver
) -> None:
    tight = deps.settings.model_copy(  # 1 + 1 overflow, and a short wait for them
        update={"database_pool_size": 1, "database_pool_timeout_seconds": 0.5}
    )
    engine = create_engine(tight)
    reference = new_reference()

    def retried() -> float:
        return sample("recon_merchant_orders_total", channel="amqp", outcome="retried")

    before = retried()
    try:
        busy = dataclasses.replace(deps, settings=tight, sessions=create_sessionmaker(engine))
        async with merchant_worker(busy), contextlib.AsyncExitStack() as held:
            for _ in range(2):  # every connection of the pool, held past its timeout
                session = await held.enter_async_context(busy.sessions())
                await session.connection()
            await send(broker, command(reference))
            await wait_until(lambda: retried() > before)
            assert await broker.fetchable(deps.names.dead_letters_queue) == 0
            await held.aclose()  # the peak is over
            (answer,) = await broker.wait_for(broker.orders.name, 1, keep=about(reference))
    finally:
        await engine.dispose()
    assert answer.routing_key == "order.created"
    assert await broker.fetchable(deps.names.dead_letters_queue) == 0
