"""The authorize consumer: once per order, retried with the same key, poison dead-lettered."""

from __future__ import annotations

from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ingress.checkout.keys import CHECKOUT
from ingress.checkout.place_order import ensure_execution, start_authorize, take_order
from ingress.checkout.validation import PlaceOrderRequest, parse_place_order
from sandbox.control_client import SandboxHandle
from shared.commands import AuthorizeCommand
from shared.db.models import IdempotencyKey, Order
from shared.messaging import (
    HDR_REASON,
    ROUTING_AUTHORIZE,
    Names,
    open_channel,
    persistent_properties,
    publish_frames,
)
from tests.checkout.conftest import FRICTIONLESS, AuthorizeConsumer, bound_session, order_body
from tests.waiting import sample, wait_until

Client = TestClient[web.Request, web.Application]


def authorize_outcomes(outcome: str) -> float:
    return sample("recon_authorize_commands_total", outcome=outcome)


def finished_commands() -> float:
    return sum(authorize_outcomes(o) for o in ("authorized", "skipped", "denied"))


async def publish_command(
    connection: AbstractRobustConnection, names: Names, body: bytes, message_id: str
) -> None:
    channel = await open_channel(connection)
    try:
        properties = persistent_properties(message_id=message_id, headers={})
        await publish_frames(
            channel, names.commands_exchange, ROUTING_AUTHORIZE, body, properties, timeout=5
        )
    finally:
        await channel.close()


async def authorizing_order(checkout: Client, sandbox: SandboxHandle) -> AuthorizeCommand:
    """An order moved to authorizing with its command published, nobody polling it."""
    parsed = parse_place_order(await order_body(checkout, sandbox, FRICTIONLESS))
    assert isinstance(parsed, PlaceOrderRequest)
    service = checkout.server.app[CHECKOUT]
    order = await take_order(service, await bound_session(checkout), parsed)
    execution_id = await ensure_execution(service, order)
    assert await start_authorize(service, order.id, execution_id)
    return AuthorizeCommand(order.reference, execution_id)


async def authorize_keys(
    sessions: async_sessionmaker[AsyncSession], reference: str
) -> list[IdempotencyKey]:
    async with sessions() as session:
        rows = await session.scalars(
            select(IdempotencyKey)
            .join(Order, Order.id == IdempotencyKey.order_id)
            .where(Order.reference == reference, IdempotencyKey.operation == "authorize")
        )
        return list(rows)


async def test_a_repeated_command_authorizes_the_order_once(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    amqp_connection: AbstractRobustConnection,
    topology: Names,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    before = finished_commands()
    command = await authorizing_order(checkout, sandbox)
    for _ in range(2):
        await publish_command(amqp_connection, topology, command.to_body(), command.message_id)

    async def all_three_finished() -> bool:
        return finished_commands() == before + 3

    await wait_until(all_three_finished)
    stats = await sandbox.stats()
    assert stats["authorizesExecuted"] == {command.execution_id: 1}
    assert len(await authorize_keys(sessions, command.order_reference)) == 1


async def test_a_command_for_a_paid_order_is_skipped(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    amqp_connection: AbstractRobustConnection,
    topology: Names,
) -> None:
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    answer = await (await checkout.post("/checkout/place-order", json=body)).json()
    assert answer["status"] == "authorized"
    before = authorize_outcomes("skipped")
    command = AuthorizeCommand(body["orderReference"], answer["executionId"])
    await publish_command(amqp_connection, topology, command.to_body(), command.message_id)

    async def skipped() -> bool:
        return authorize_outcomes("skipped") > before

    await wait_until(skipped)
    assert (await sandbox.stats())["authorizesExecuted"] == {answer["executionId"]: 1}


async def test_a_transient_payrails_failure_is_retried_with_the_same_key(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The consumer's client makes no retries of its own, so the command takes a delay queue."""
    await sandbox.set_faults({"endpoints": {"authorize": {"error_rate": 1, "times": 1}}})
    before = authorize_outcomes("retried")
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    response = await checkout.post("/checkout/place-order", json=body)
    assert (await response.json())["status"] == "authorized"
    assert authorize_outcomes("retried") == before + 1
    keys = await authorize_keys(sessions, body["orderReference"])
    assert len(keys) == 1
    assert keys[0].completed_at is not None
    stats = await sandbox.stats()
    assert stats["requests"]["authorize"] == 2
    assert sum(stats["authorizesExecuted"].values()) == 1


async def test_an_unreadable_command_is_dead_lettered(
    authorize_consumer: AuthorizeConsumer,
    amqp_connection: AbstractRobustConnection,
    topology: Names,
) -> None:
    await publish_command(amqp_connection, topology, b"not json", "authorize:garbage")
    channel = await amqp_connection.channel()
    try:
        queue = await channel.get_queue(topology.dead_letters_queue, ensure=False)

        async def parked() -> bool:
            message = await queue.get(fail=False, no_ack=True)
            if message is None:
                return False
            assert message.body == b"not json"
            assert message.headers[HDR_REASON] == "invalid_payload"
            return True

        await wait_until(parked)
    finally:
        await channel.close()


async def test_an_authorize_payrails_refuses_fails_the_payment(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """An instrument the sandbox never issued: a 400 that proves nothing was authorized."""
    before = authorize_outcomes("refused")
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    body["paymentInstrumentId"] = "pi_never_issued"
    response = await checkout.post("/checkout/place-order", json=body)
    assert response.status == 200
    answer = await response.json()
    assert answer["status"] == "failed"
    assert answer["reason"] == "authorize refused: request.validation-error"
    order = await (await checkout.get(f"/orders/{answer['orderReference']}")).json()
    assert order["status"] == "payment_failed"
    assert order["failureReason"] == "authorize refused: request.validation-error"
    assert order["confirmedBy"] == "authorize"
    assert authorize_outcomes("refused") == before + 1
    assert (await sandbox.stats())["authorizesExecuted"] == {}


async def test_an_authorize_whose_answer_was_lost_is_retried_with_the_same_key_once(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Payrails does the authorize but the answer never arrives: the retry's call is replayed.

    Nobody polls this order, so the retried command still finds it authorizing and calls again.
    """
    await sandbox.set_faults({"endpoints": {"authorize": {"drop_response_rate": 1, "times": 1}}})
    retried, authorized = authorize_outcomes("retried"), authorize_outcomes("authorized")
    command = await authorizing_order(checkout, sandbox)

    async def acknowledged() -> bool:
        return authorize_outcomes("authorized") == authorized + 1

    await wait_until(acknowledged)
    assert authorize_outcomes("retried") == retried + 1
    keys = await authorize_keys(sessions, command.order_reference)
    assert len(keys) == 1
    assert keys[0].completed_at is not None
    stats = await sandbox.stats()
    assert stats["faultsInjected"]["authorize.drop_response"] == 1
    assert stats["requests"]["authorize"] == 2
    assert stats["idempotentReplays"] == 1
    assert stats["authorizesExecuted"] == {command.execution_id: 1}
