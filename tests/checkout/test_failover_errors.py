"""The checkout during a database failover: a node refusing writes is "retry shortly", not a bug."""

from __future__ import annotations

from tests.checkout.conftest import MERCHANT_AUTH, Client, terms
from tests.read_only import ReadOnlySwitch


async def test_create_order_on_a_read_only_database_answers_503_then_a_retry_creates_it(
    checkout: Client, read_only_switch: ReadOnlySwitch
) -> None:
    body = terms()
    read_only_switch.on()  # the checkout's pool connects now: to a node that refuses writes
    refused = await checkout.post("/merchant/orders", json=body, headers=MERCHANT_AUTH)
    assert refused.status == 503, await refused.text()
    assert (await refused.json())["error"] == "unavailable"

    read_only_switch.off()  # the failover is over; connections made before it still refuse
    created = await checkout.post("/merchant/orders", json=body, headers=MERCHANT_AUTH)
    assert created.status in (200, 201), await created.text()
