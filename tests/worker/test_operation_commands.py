"""``order.capture``, ``order.cancel`` and ``order.refund`` over RabbitMQ: stored once per
commandId, handed to the operations queue, answered on the orders exchange."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.commands import answer_message_id
from shared.db.models import MerchantCommand
from shared.messaging import persistent_properties, publish_frames
from shared.operation_states import OperationState
from tests.paid_orders import insert_paid_order, operations_of, take_all
from tests.waiting import sample
from tests.worker.conftest import QueueDriver
from tests.worker.test_asyncapi import check
from tests.worker.test_merchant_commands import about, count, merchant_worker
from worker.deps import Deps


def eur(value: str) -> dict[str, str]:
    return {"value": value, "currency": "EUR"}


async def send(broker: QueueDriver, kind: str, body: dict[str, Any]) -> None:
    await publish_frames(
        broker.channel,
        broker.names.commands_exchange,
        f"order.{kind}",
        json.dumps(body).encode(),
        persistent_properties(message_id=body["commandId"], headers={}),
        timeout=5,
    )


def command(reference: str, **fields: Any) -> dict[str, Any]:
    return {"commandId": str(uuid.uuid4()), "orderReference": reference, **fields}


@pytest.mark.parametrize(
    ("kind", "captured", "fields", "amount"),
    [
        pytest.param("capture", None, {"amount": eur("30.00"), "final": False}, "30.00"),
        pytest.param("cancel", None, {}, "100.00"),
        pytest.param("refund", "50.00", {"amount": eur("20.00")}, "20.00"),
    ],
)
async def test_a_command_stores_the_operation_hands_it_over_and_answers_requested(
    kind: str,
    captured: str | None,
    fields: dict[str, Any],
    amount: str,
    deps: Deps,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
    amqp_connection: AbstractRobustConnection,
) -> None:
    reference = await insert_paid_order(sessions, captured=captured)
    body = command(reference, **fields)
    before = sample(
        "recon_operations_requested_total", channel="amqp", kind=kind, outcome="requested"
    )
    async with merchant_worker(deps):
        await send(broker, kind, body)
        (answer,) = await broker.wait_for(broker.orders.name, 1, keep=about(reference))
    message = json.loads(answer.body)
    assert answer.routing_key == "order.operation_requested"
    assert answer.message_id == message["messageId"] == answer_message_id(body["commandId"])
    assert (message["commandId"], message["kind"]) == (body["commandId"], kind)
    operation = message["operation"]
    assert (operation["kind"], operation["amount"], operation["state"]) == (
        kind,
        eur(amount),
        "requested",
    )
    assert message["money"]["captured"] == (captured or "0.00")
    assert check(message, "OperationAnswer") == []
    row = (await operations_of(sessions, reference))[-1]
    assert (str(row.idempotency_key), row.command_id, row.amount_value) == (
        operation["id"],
        body["commandId"],
        Decimal(amount),
    )
    executes = await take_all(amqp_connection, broker.names.operations_queue)
    assert [m["operationId"] for m in executes] == [operation["id"]]
    assert (
        sample("recon_operations_requested_total", channel="amqp", kind=kind, outcome="requested")
        == before + 1
    )


async def test_a_repeated_command_is_answered_again_with_the_same_id_and_runs_once(
    deps: Deps,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
    amqp_connection: AbstractRobustConnection,
) -> None:
    reference = await insert_paid_order(sessions)
    body = command(reference, amount=eur("10.00"), final=False)
    async with merchant_worker(deps):
        await send(broker, "capture", body)
        (first,) = await broker.wait_for(broker.orders.name, 1, keep=about(reference))
        await send(broker, "capture", body)
        (again,) = await broker.wait_for(broker.orders.name, 1, keep=about(reference))
    assert again.message_id == first.message_id
    assert json.loads(again.body) == json.loads(first.body)
    (row,) = await operations_of(sessions, reference)
    assert await count(sessions, MerchantCommand, command_id=body["commandId"]) == 1
    # still requested (no worker took it on yet): handed over again, the same operation
    executes = await take_all(amqp_connection, broker.names.operations_queue)
    assert [m["operationId"] for m in executes] == [str(row.idempotency_key)] * 2
    assert row.state is OperationState.REQUESTED


@pytest.mark.parametrize(
    ("kind", "fields", "code"),
    [
        pytest.param("capture", {"amount": eur("100.01")}, "exceeds_authorized"),
        pytest.param("refund", {"amount": eur("1.00")}, "exceeds_captured"),
        pytest.param("cancel", {"amount": eur("1.00")}, "partial_cancel"),
        pytest.param(
            "capture", {"amount": {"value": "1.00", "currency": "USD"}}, "currency_mismatch"
        ),
    ],
)
async def test_a_command_breaking_a_money_rule_is_rejected_with_its_code_and_stores_nothing(
    kind: str,
    fields: dict[str, Any],
    code: str,
    deps: Deps,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
    amqp_connection: AbstractRobustConnection,
) -> None:
    reference = await insert_paid_order(sessions)
    body = command(reference, **fields)
    async with merchant_worker(deps):
        await send(broker, kind, body)
        (answer,) = await broker.wait_for(broker.orders.name, 1, keep=about(reference))
        await send(broker, kind, body)
        (again,) = await broker.wait_for(broker.orders.name, 1, keep=about(reference))
    message = json.loads(answer.body)
    assert answer.routing_key == "order.operation_rejected"
    assert (message["code"], message["kind"]) == (code, kind)
    assert message["message"]
    assert message["money"]["authorized"] == "100.00"
    assert check(message, "OperationAnswer") == []
    assert again.message_id == answer.message_id
    assert await operations_of(sessions, reference) == []
    assert await take_all(amqp_connection, broker.names.operations_queue) == []


async def test_a_command_for_an_unknown_order_is_rejected_not_found(
    deps: Deps, broker: QueueDriver
) -> None:
    reference = "ord_no_such_order"
    body = command(reference)
    async with merchant_worker(deps):
        await send(broker, "cancel", body)
        (answer,) = await broker.wait_for(
            broker.orders.name,
            1,
            keep=lambda m: json.loads(m.body).get("commandId") == body["commandId"],
        )
    message = json.loads(answer.body)
    assert (answer.routing_key, message["code"], message["money"]) == (
        "order.operation_rejected",
        "not_found",
        None,
    )
    assert check(message, "OperationAnswer") == []
