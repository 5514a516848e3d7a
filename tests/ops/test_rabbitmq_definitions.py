"""deploy/rabbitmq/definitions.json declares exactly what shared.messaging.declare_topology does.

Checked on the real broker: the code declares the topology (under a prefix of this test's own),
then every exchange and queue of the definitions file is declared again with its type and
arguments. RabbitMQ refuses a declaration whose arguments differ from the existing one
(PRECONDITION_FAILED), so a passing declaration proves the two agree. Bindings are proved by
routing a message through each one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection, ExchangeType

from shared.messaging import Names, declare_topology
from tests.conftest import delete_topology
from tests.ops.deploy_files import DEPLOY
from tests.settings import Settings

DEFINITIONS: dict[str, Any] = json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())


@pytest.fixture
async def code_topology(
    base_env: dict[str, str], amqp_connection: AbstractRobustConnection
) -> AsyncIterator[Settings]:
    """The code's topology with the default settings (as compose runs it) under a fresh prefix."""
    env = {k: v for k, v in base_env.items() if k != "WORKER_RETRY_DELAYS_SECONDS"}
    settings = Settings.from_env({**env, "AMQP_NAME_PREFIX": f"defs-{uuid.uuid4().hex[:8]}."})
    async with amqp_connection.channel() as channel:
        await declare_topology(channel, settings)
    yield settings
    await delete_topology(amqp_connection, settings)


def prefixed(settings: Settings, name: str) -> str:
    return f"{settings.amqp_name_prefix}{name}" if name else name


def expected_queues(names: Names, settings: Settings) -> set[str]:
    retry = {
        names.retry_queue(source, delay)
        for source in names.work_queues
        for delay in settings.worker_retry_delays_seconds
    }
    return {*names.work_queues, names.dead_letters_queue, names.orders_unrouted_queue, *retry}


def test_definitions_name_every_queue_and_exchange_of_the_code() -> None:
    names, settings = Names(""), Settings()
    assert {q["name"] for q in DEFINITIONS["queues"]} == expected_queues(names, settings)
    assert {x["name"] for x in DEFINITIONS["exchanges"]} == {
        names.webhooks_exchange,
        names.commands_exchange,
        names.orders_exchange,
        names.orders_unrouted_exchange,
    }
    assert all(q["durable"] and not q["auto_delete"] for q in DEFINITIONS["queues"])


def test_every_queue_is_quorum_and_dead_letters_at_least_once() -> None:
    # At most once (the default) drops a message whose target is briefly unavailable on expiry.
    for queue in DEFINITIONS["queues"]:
        arguments = queue["arguments"]
        assert arguments["x-queue-type"] == "quorum", queue["name"]
        if "x-dead-letter-exchange" in arguments:
            assert arguments["x-dead-letter-strategy"] == "at-least-once", queue["name"]
            assert arguments["x-overflow"] == "reject-publish", queue["name"]


async def test_definitions_declare_with_the_same_types_and_arguments_as_the_code(
    code_topology: Settings, amqp_connection: AbstractRobustConnection
) -> None:
    settings = code_topology
    async with amqp_connection.channel() as channel:
        for exchange in DEFINITIONS["exchanges"]:
            arguments = dict(exchange["arguments"])
            if "alternate-exchange" in arguments:
                arguments["alternate-exchange"] = prefixed(
                    settings, arguments["alternate-exchange"]
                )
            await channel.declare_exchange(
                prefixed(settings, exchange["name"]),
                ExchangeType(exchange["type"]),
                durable=exchange["durable"],
                auto_delete=exchange["auto_delete"],
                internal=exchange["internal"],
                arguments=arguments,
            )
        for queue in DEFINITIONS["queues"]:
            arguments = dict(queue["arguments"])
            if arguments.get("x-dead-letter-routing-key"):
                routing_key = arguments["x-dead-letter-routing-key"]
                arguments["x-dead-letter-routing-key"] = prefixed(settings, routing_key)
            await channel.declare_queue(
                prefixed(settings, queue["name"]),
                durable=queue["durable"],
                auto_delete=queue["auto_delete"],
                arguments=arguments,
            )


async def test_every_binding_of_the_definitions_routes_like_the_code(
    code_topology: Settings, amqp_connection: AbstractRobustConnection
) -> None:
    settings = code_topology
    channel = await amqp_connection.channel(publisher_confirms=True, on_return_raises=True)
    try:
        for binding in DEFINITIONS["bindings"]:
            exchange = await channel.get_exchange(prefixed(settings, binding["source"]))
            key = binding["routing_key"].replace("#", "executionActionCompleted")
            marker = uuid.uuid4().hex
            await exchange.publish(aio_pika.Message(marker.encode()), key, mandatory=True)
            queue = await channel.get_queue(prefixed(settings, binding["destination"]))
            message = await queue.get(no_ack=True, timeout=5)
            assert message is not None, binding
            assert message.body == marker.encode(), binding
    finally:
        await channel.close()
