"""Broker outages, simulated with a TCP proxy in front of the shared RabbitMQ (never stopped)."""

from __future__ import annotations

import asyncio
import contextlib

from structlog.testing import capture_logs

from ingress.broker import Broker
from ingress.keys import BROKER
from shared.messaging import Names
from tests.ingress.conftest import (
    EACH_PUBLISHER,
    Client,
    StartIngress,
    admin_get,
    post_signed,
    through,
    webhook_body,
)
from tests.ingress.proxy import TcpProxy
from tests.ports import free_port
from tests.settings import Settings
from tests.waiting import wait_until

pytestmark = EACH_PUBLISHER


async def behind_proxy(
    ingress_settings: Settings, proxy: TcpProxy, start_ingress: StartIngress
) -> tuple[Settings, Client]:
    """An ingress, ready, whose broker connection runs through the started ``proxy``."""
    settings = through(ingress_settings, proxy.port)
    await proxy.start()
    return settings, await start_ingress(settings)


async def assert_unavailable(client: Client, settings: Settings) -> str:
    response = await post_signed(client, webhook_body(), settings)
    assert response.status == 503
    assert response.headers["Retry-After"]
    readiness, _ = await admin_get(client, "/readyz")
    assert readiness == 503
    reason: str = (await response.json())["reason"]
    return reason


async def test_broker_never_reachable_answers_503_and_not_ready(
    ingress_settings: Settings, start_ingress: StartIngress
) -> None:
    settings = through(ingress_settings, free_port())
    client = await start_ingress(settings, wait_ready=False)

    assert await assert_unavailable(client, settings) == "disconnected"
    assert (await client.get("/healthz")).status == 200


async def test_ingress_started_while_broker_down_connects_once_it_is_up(
    ingress_settings: Settings, topology: Names, proxy: TcpProxy, start_ingress: StartIngress
) -> None:
    settings = through(ingress_settings, proxy.port)
    client = await start_ingress(settings, wait_ready=False)
    await assert_unavailable(client, settings)

    await proxy.start()

    assert await client.app[BROKER].wait_ready(10)
    assert (await post_signed(client, webhook_body(), settings)).status == 200


async def test_cut_connection_answers_503_and_recovers_without_restart(
    ingress_settings: Settings, topology: Names, proxy: TcpProxy, start_ingress: StartIngress
) -> None:
    settings, client = await behind_proxy(ingress_settings, proxy, start_ingress)
    assert (await post_signed(client, webhook_body(), settings)).status == 200

    await proxy.cut()
    await assert_unavailable(client, settings)

    await proxy.start()
    assert await client.app[BROKER].wait_ready(10)
    assert (await post_signed(client, webhook_body(), settings)).status == 200
    assert (await admin_get(client, "/readyz"))[0] == 200


async def test_publish_into_a_silently_dead_connection_fails_within_the_timeout(
    ingress_settings: Settings, topology: Names, proxy: TcpProxy, start_ingress: StartIngress
) -> None:
    """No confirm ever comes back: the publish timeout turns that into a 503, never a hang."""
    settings, client = await behind_proxy(ingress_settings, proxy, start_ingress)

    proxy.stall()
    response = await post_signed(client, webhook_body(), settings)

    assert response.status == 503
    assert (await response.json())["reason"] == "timeout"


async def test_identical_deliveries_into_a_silently_dead_connection_all_fail_over_to_503(
    ingress_settings: Settings, topology: Names, proxy: TcpProxy, start_ingress: StartIngress
) -> None:
    """Same message_id, all in flight, no confirm ever: each answer is a 503, none hangs.

    aio-pika #689 reports that publishes sharing a message_id can hang while both are in
    flight; the ingress's one deadline per request must hold anyway (a hang fails this test by
    its timeout).
    """
    settings, client = await behind_proxy(ingress_settings, proxy, start_ingress)
    body = webhook_body()

    proxy.stall()
    responses = await asyncio.gather(*(post_signed(client, body, settings) for _ in range(10)))

    assert [r.status for r in responses] == [503] * 10
    assert {(await r.json())["reason"] for r in responses} == {"timeout"}


async def test_a_later_publish_times_out_at_its_own_deadline_not_an_earlier_ones(
    ingress_settings: Settings, topology: Names, proxy: TcpProxy, start_ingress: StartIngress
) -> None:
    """One timer serves every publish's deadline; it must not expire a publish early."""
    settings, client = await behind_proxy(ingress_settings, proxy, start_ingress)
    timeout = settings.amqp_publish_timeout_seconds
    loop = asyncio.get_running_loop()

    async def timed(event_id: str) -> tuple[int, float]:
        started = loop.time()
        response = await post_signed(client, webhook_body(id=event_id), settings)
        return response.status, loop.time() - started

    proxy.stall()
    first = asyncio.create_task(timed("evt_first"))
    await asyncio.sleep(timeout / 2)
    second = asyncio.create_task(timed("evt_second"))  # not a copy: it has a deadline of its own

    for status, waited in (await first, await second):
        assert status == 503
        assert waited >= timeout * 0.99  # the loop clock may round a timer a hair early


async def test_reconnect_attempts_are_spaced_by_growing_jittered_pauses(
    ingress_settings: Settings,
) -> None:
    """Observed through the log line of each failed attempt: the pause it announces and takes."""
    settings = through(ingress_settings, free_port()).model_copy(
        update={"amqp_reconnect_interval_seconds": 0.01, "amqp_reconnect_max_seconds": 0.08}
    )
    broker = Broker(settings)

    def pauses() -> list[float]:
        return [line["retry_in"] for line in logs if line["event"] == "broker.connect_failed"]

    with capture_logs() as logs:
        connecting = asyncio.create_task(broker.connect())
        try:
            await wait_until(lambda: len(pauses()) >= 6)
        finally:
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connecting
            await broker.close()

    ceilings = [0.01, 0.02, 0.04, 0.08, 0.08, 0.08]  # doubling from the interval to the max
    taken = pauses()[:6]
    assert all(c / 2 * 0.999 <= p <= c * 1.001 for p, c in zip(taken, ceilings, strict=True))
    assert min(taken[3:]) > max(taken[:1])  # they grow
    assert len({round(p / c, 6) for p, c in zip(taken, ceilings, strict=True)}) > 1  # jittered
