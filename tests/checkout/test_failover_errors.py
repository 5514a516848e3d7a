"""The checkout during a database failover: a node refusing writes is "retry shortly", not a bug.

So is a pool whose every connection stays busy past its timeout (a load peak).
"""

from __future__ import annotations

import contextlib

from ingress.checkout.keys import SESSIONS
from shared.messaging import Names
from tests.checkout.conftest import MERCHANT_AUTH, Client, serve_checkout, terms
from tests.read_only import ReadOnlySwitch
from tests.settings import Settings


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


async def test_a_request_finding_every_pooled_connection_busy_answers_503_then_a_retry_is_served(
    checkout_settings: Settings, topology: Names
) -> None:
    one = checkout_settings.model_copy(  # 1 + 1 overflow, and a short wait for them
        update={"database_pool_size": 1, "database_pool_timeout_seconds": 0.5}
    )
    body = terms()
    async with serve_checkout(one) as checkout, contextlib.AsyncExitStack() as held:
        for _ in range(2):
            session = await held.enter_async_context(checkout.server.app[SESSIONS]())
            await session.connection()
        refused = await checkout.post("/merchant/orders", json=body, headers=MERCHANT_AUTH)
        answer = await refused.json(content_type=None)
        assert refused.status == 503, answer
        assert answer["error"] == "unavailable"
        await held.aclose()
        created = await checkout.post("/merchant/orders", json=body, headers=MERCHANT_AUTH)
        assert created.status == 201, await created.text()
