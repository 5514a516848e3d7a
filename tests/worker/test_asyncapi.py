"""docs/asyncapi.yaml describes the bodies the worker really publishes."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from shared.db.models import Order
from shared.messaging import ORDER_ROUTING_KEYS
from shared.orders import SCHEMA_VERSION, message_body
from shared.state_machine import Cause, OrderStatus, Transition

SPEC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"


def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    return loaded


def test_every_routing_key_is_a_documented_channel() -> None:
    addresses = {channel["address"] for channel in spec()["channels"].values()}
    assert addresses == set(ORDER_ROUTING_KEYS)


def test_message_body_has_every_required_field_and_only_documented_ones() -> None:
    schema = spec()["components"]["schemas"]["OrderMessage"]
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
    body = message_body(order, transition, "m-1", Cause.WEBHOOK)

    assert set(schema["required"]) <= set(body)
    assert set(body) <= set(schema["properties"])
    assert body["schemaVersion"] == SCHEMA_VERSION == int(spec()["info"]["version"].split(".")[0])
