"""docs/asyncapi.yaml describes the bodies the worker really publishes."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import Order, OutboxMessage
from shared.operation_messages import ROUTING_KEYS as OPERATION_ROUTING_KEYS
from shared.order_store import SCHEMA_VERSION, apply_observation, message_body, record_transition
from shared.state_machine import (
    ROUTING_KEY,
    Cause,
    Observation,
    OrderStatus,
    Transition,
    resolve_review,
)
from tests.worker.conftest import insert_order
from worker.capture_deadline import ROUTING_CAPTURE_DUE
from worker.merchant import ROUTING_CREATED, ROUTING_REJECTED
from worker.merchant_operations import ROUTING_OPERATION_REJECTED, ROUTING_OPERATION_REQUESTED

# Every routing key the service publishes on the orders exchange.
ORDER_ROUTING_KEYS = {
    *ROUTING_KEY.values(),
    *OPERATION_ROUTING_KEYS.values(),
    ROUTING_CREATED,
    ROUTING_REJECTED,
    ROUTING_OPERATION_REQUESTED,
    ROUTING_OPERATION_REJECTED,
    ROUTING_CAPTURE_DUE,
}

SPEC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    return loaded


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _type_ok(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[name])


def _format_ok(value: str, fmt: str) -> bool:
    if fmt == "uuid":
        return str(uuid.UUID(value)) == value
    if fmt == "date-time":
        return datetime.fromisoformat(value).tzinfo is not None
    if fmt == "uri":
        return re.match(r"^[a-z][a-z0-9+.-]*://\S+$", value) is not None
    return True


def violations(value: Any, schema: dict[str, Any], root: dict[str, Any], at: str = "") -> list[str]:
    """The JSON-Schema subset the spec uses (type, const, enum, required, properties, ...)."""
    schema = _resolve(schema, root)
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(_type_ok(value, n) for n in names):
            return [f"{at or '/'}: {value!r} is not {names}"]
    found: list[str] = []
    if "const" in schema and value != schema["const"]:
        found.append(f"{at}: {value!r} != {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{at}: {value!r} not in {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            found.append(f"{at}: {value!r} does not match {schema['pattern']}")
        if len(value) > schema.get("maxLength", len(value)):
            found.append(f"{at}: longer than {schema['maxLength']}")
        if "format" in schema and not _format_ok(value, schema["format"]):
            found.append(f"{at}: {value!r} is not a {schema['format']}")
    if isinstance(value, dict):
        properties: dict[str, Any] = schema.get("properties", {})
        found += [f"{at}/{k}: required" for k in schema.get("required", []) if k not in value]
        for key, item in value.items():
            if key in properties:
                found += violations(item, properties[key], root, f"{at}/{key}")
            elif schema.get("additionalProperties") is False:
                found.append(f"{at}/{key}: not allowed")
    return found


def check(body: dict[str, Any], schema_name: str = "OrderMessage") -> list[str]:
    """Violations of a schema of the spec, plus any property the spec does not document."""
    root = spec()
    schema = root["components"]["schemas"][schema_name]
    undocumented = [f"/{k}: undocumented" for k in body if k not in schema["properties"]]
    return violations(body, schema, root) + undocumented


def test_every_routing_key_is_a_documented_channel_of_the_orders_exchange() -> None:
    ordersexchange = "#/components/channelBindings/ordersExchange"
    addresses = {
        channel["address"]
        for channel in spec()["channels"].values()
        if channel["bindings"]["amqp"]["$ref"] == ordersexchange
    }
    assert addresses == ORDER_ROUTING_KEYS


def test_every_example_in_the_spec_validates_against_its_schema() -> None:
    examples = [
        (example["payload"], message["payload"]["$ref"].rsplit("/", 1)[-1])
        for message in spec()["components"]["messages"].values()
        for example in message["examples"]
    ]

    assert examples
    assert [check(e, name) for e, name in examples] == [[] for _ in examples]


def test_schema_check_reports_a_wrong_body() -> None:
    body = {"schemaVersion": 2, "previousStatus": "paid", "amount": {"value": 1.5}}

    problems = check(body)

    assert "/schemaVersion: 2 != 1" in problems
    assert any(p.startswith("/previousStatus:") for p in problems)
    assert any(p.startswith("/amount/value:") for p in problems)
    assert "/orderReference: required" in problems


def test_message_body_schema_version_matches_the_spec_major_version() -> None:
    order = Order(
        reference="ord_1",
        customer_reference="cust_1",
        amount_value=Decimal("12.50"),
        currency="EUR",
        execution_id="exec_1",
    )
    transition = Transition(
        OrderStatus.AUTHORIZING, OrderStatus.ACTION_REQUIRED, "https://x/3ds", "Pending"
    )
    body = message_body(order, transition, str(uuid.uuid4()), Cause.WEBHOOK)

    assert check(body) == []
    assert body["schemaVersion"] == SCHEMA_VERSION == int(spec()["info"]["version"].split(".")[0])


async def stored_body(sessions: async_sessionmaker[AsyncSession], order_id: int) -> Any:
    async with sessions() as session:
        return await session.scalar(
            select(OutboxMessage.body)
            .where(OutboxMessage.order_id == order_id)
            .order_by(OutboxMessage.id.desc())
            .limit(1)
        )


@pytest.mark.parametrize(
    "observed",
    [
        Observation(OrderStatus.ACTION_REQUIRED, "https://x.example/3ds/1", None),
        Observation(OrderStatus.PAID, None, None),
        Observation(OrderStatus.PAYMENT_FAILED, None, "InsufficientBalance"),
        Observation(OrderStatus.NEEDS_REVIEW, None, "ProviderTimeout"),
    ],
    ids=lambda o: o.status.value,
)
async def test_published_body_of_every_status_validates_against_the_schema(
    sessions: async_sessionmaker[AsyncSession], observed: Observation
) -> None:
    order = await insert_order(sessions, execution_id=str(uuid.uuid4()))
    async with sessions.begin() as session:
        locked = await session.get(Order, order.id, with_for_update=True)
        assert locked is not None
        assert await apply_observation(session, locked, observed, Cause.WEBHOOK) is not None

    body = await stored_body(sessions, order.id)

    assert check(body) == []


async def test_operator_verdict_body_validates_and_carries_the_note(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    order = await insert_order(sessions, execution_id=str(uuid.uuid4()), status="needs_review")
    async with sessions.begin() as session:
        locked = await session.get(Order, order.id, with_for_update=True)
        assert locked is not None
        transition = resolve_review(OrderStatus.NEEDS_REVIEW, OrderStatus.PAID, "PSP report: paid")
        assert transition is not None
        await record_transition(session, locked, transition, Cause.OPERATOR)

    body = await stored_body(sessions, order.id)

    assert check(body) == []
    assert (body["previousStatus"], body["status"], body["cause"], body["reason"]) == (
        "needs_review",
        "paid",
        "operator",
        "PSP report: paid",
    )
