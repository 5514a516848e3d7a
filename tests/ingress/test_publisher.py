"""The ingress's publish-only confirm connection, against the real RabbitMQ (through a proxy
where a fault is needed): confirms, a broker-closed channel, blocking, backpressure, heartbeats;
and, fed frames directly, the cost of settling a multiple ack.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection
from pamqp import commands as spec
from pamqp import frame as pamqp_frame

from ingress.amqp_wire import Outgoing
from ingress.broker import Broker
from ingress.publisher import ConfirmPublisher, Endpoint, PublishRefused
from shared.config import Secret
from shared.errors import PublishError
from shared.messaging import Names
from tests.ingress.conftest import queue_depth, through, webhook_body
from tests.ingress.proxy import TcpProxy
from tests.settings import Settings
from tests.waiting import wait_until

OpenBroker = Callable[[Settings], Awaitable[Broker]]


@pytest.fixture
async def open_broker() -> AsyncIterator[OpenBroker]:
    """Connected Brokers, each closed at the end."""
    brokers: list[Broker] = []

    async def start(settings: Settings) -> Broker:
        broker = Broker(settings)
        brokers.append(broker)
        await asyncio.wait_for(broker.connect(), 15)
        assert broker.is_ready
        return broker

    yield start
    for broker in brokers:
        await broker.close()


async def publish(broker: Broker, names: Names, message_id: str, body: bytes = b"{}") -> None:
    await broker.publish(
        names.webhooks_exchange,
        "executionActionCompleted",
        body,
        message_id=message_id,
        headers={"x-event-id": message_id},
    )


async def test_publishes_made_together_are_each_confirmed_and_each_stored(
    ingress_settings: Settings,
    topology: Names,
    open_broker: OpenBroker,
    amqp_connection: AbstractRobustConnection,
) -> None:
    broker = await open_broker(ingress_settings)

    await asyncio.gather(*(publish(broker, topology, f"m-{n}", webhook_body()) for n in range(300)))

    assert await queue_depth(amqp_connection, topology.events_queue) == 300


async def test_a_publish_with_none_awaiting_a_confirm_is_not_held_for_the_batch_window(
    ingress_settings: Settings, topology: Names, open_broker: OpenBroker
) -> None:
    # Held for the window, each publish would outlive its 1 s timeout and fail.
    settings = ingress_settings.model_copy(update={"amqp_publish_batch_window_seconds": 30.0})
    broker = await open_broker(settings)

    await publish(broker, topology, "m-1")
    await publish(broker, topology, "m-2")


async def test_publishes_made_while_another_awaits_its_confirm_leave_in_one_write(
    ingress_settings: Settings, topology: Names, proxy: TcpProxy, open_broker: OpenBroker
) -> None:
    await proxy.start()
    settings = through(ingress_settings, proxy.port).model_copy(
        update={"amqp_publish_batch_window_seconds": 0.5, "amqp_publish_timeout_seconds": 10.0}
    )
    broker = await open_broker(settings)
    proxy.slow_down(1.0)  # the first publish's confirm is back 2 s after it left
    first = asyncio.create_task(publish(broker, topology, "m-first"))
    await proxy.upstream_traffic.wait()

    second = asyncio.create_task(publish(broker, topology, "m-second"))
    await asyncio.sleep(0.05)  # a later tick, well within the window
    third = asyncio.create_task(publish(broker, topology, "m-third"))
    await asyncio.gather(first, second, third)

    (together,) = [chunk for chunk in proxy.upstream_chunks if b"m-second" in chunk]
    assert b"m-third" in together
    assert b"m-first" not in together


async def test_a_channel_the_broker_closes_fails_its_publish_and_is_reopened(
    ingress_settings: Settings, topology: Names, open_broker: OpenBroker
) -> None:
    broker = await open_broker(ingress_settings)

    with pytest.raises(PublishError) as refused:
        await broker.publish(
            f"{topology.prefix}no-such-exchange", "rk", b"{}", message_id="m-1", headers={}
        )

    assert refused.value.reason == "disconnected"
    assert await broker.wait_ready(5)
    await publish(broker, topology, "m-2")  # confirmed on the reopened channel


async def test_a_blocked_connection_refuses_publishes_at_once_until_unblocked(
    ingress_settings: Settings, topology: Names, proxy: TcpProxy, open_broker: OpenBroker
) -> None:
    await proxy.start()
    broker = await open_broker(through(ingress_settings, proxy.port))

    proxy.inject(pamqp_frame.marshal(spec.Connection.Blocked("low on memory"), 0))
    await wait_until(lambda: not broker.is_ready, timeout=5)
    with pytest.raises(PublishError) as refused:
        await publish(broker, topology, "m-1")
    assert refused.value.reason == "blocked"

    proxy.inject(pamqp_frame.marshal(spec.Connection.Unblocked(), 0))
    assert await broker.wait_ready(5)
    await publish(broker, topology, "m-2")


async def test_a_backed_up_socket_refuses_publishes_instead_of_buffering_them(
    ingress_settings: Settings, topology: Names, proxy: TcpProxy, open_broker: OpenBroker
) -> None:
    await proxy.start()
    broker = await open_broker(through(ingress_settings, proxy.port))
    proxy.freeze()
    big = b"x" * (1024 * 1024)

    # Never confirmed, together they fill the kernel's buffers, then the transport's.
    filling = [asyncio.create_task(publish(broker, topology, f"big-{n}", big)) for n in range(32)]
    await asyncio.sleep(0.2)

    with pytest.raises(PublishError) as refused:
        await publish(broker, topology, "one-more")

    assert refused.value.reason == "backpressure"
    outcomes = await asyncio.gather(*filling, return_exceptions=True)
    assert {o.reason for o in outcomes if isinstance(o, PublishError)} == {"timeout"}


async def test_a_broker_silent_past_two_heartbeats_is_dropped_and_reconnected(
    ingress_settings: Settings, topology: Names, proxy: TcpProxy, open_broker: OpenBroker
) -> None:
    await proxy.start()
    settings = through(ingress_settings, proxy.port)
    url = settings.amqp_url.reveal() + "?heartbeat=1"
    broker = await open_broker(settings.model_copy(update={"amqp_url": Secret(url)}))

    proxy.stall()
    await wait_until(lambda: not broker.is_ready, timeout=5)  # ~2 s of silence

    await proxy.cut()  # the reconnect attempt hangs on the stalled proxy: end it
    proxy.stalled = False
    await proxy.start()
    assert await broker.wait_ready(10)
    await publish(broker, topology, "m-after")


class Wire(asyncio.Transport):
    """A transport that keeps what the publisher writes and never closes."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


class CountingPending(collections.OrderedDict[int, Any]):
    """A publisher's unconfirmed publishes, counting every tag looked at: iterated or popped."""

    def __init__(self) -> None:
        super().__init__()
        self.visits = 0

    def __iter__(self) -> Iterator[int]:
        for tag in super().__iter__():
            self.visits += 1
            yield tag

    def pop(self, key: int, *default: Any) -> Any:
        self.visits += 1
        return super().pop(key, *default)


async def confirm_mode_publisher() -> ConfirmPublisher:
    """A publisher taken through the handshake by frames fed to it, no broker behind it."""
    publisher = ConfirmPublisher(
        Endpoint.from_url("amqp://guest:guest@127.0.0.1/"),
        "recon-ingress-test",
        "application/json",
        on_ready=lambda _: None,
    )
    publisher.connection_made(Wire())
    for channel, frame in [
        (0, spec.Connection.Start(mechanisms="PLAIN")),
        (0, spec.Connection.Tune(frame_max=131_072)),
        (0, spec.Connection.OpenOk()),
        (1, spec.Channel.OpenOk()),
        (1, spec.Confirm.SelectOk()),
    ]:
        publisher.data_received(pamqp_frame.marshal(frame, channel))
    await publisher.ready
    return publisher


async def test_a_multiple_ack_after_millions_of_single_acks_visits_only_what_is_in_flight() -> None:
    publisher = await confirm_mode_publisher()
    publisher._tag = 2_000_000  # what 2,000,000 publishes, each acked singly, leave behind
    publisher._pending = pending = CountingPending()
    sent = [publisher.publish(Outgoing("ex", "rk", b"{}", f"m-{n}", {})) for n in range(3)]

    ack = spec.Basic.Ack(2_000_002, multiple=True)  # the first two of the three in flight
    publisher.data_received(pamqp_frame.marshal(ack, 1))

    assert [confirmed.done() for confirmed in sent] == [True, True, False]
    assert await sent[0] is None
    assert await sent[1] is None
    assert pending.visits <= 2 * len(sent), f"{pending.visits:,} tags visited for 3 in flight"

    nack = spec.Basic.Nack(0, multiple=True)  # every outstanding message
    publisher.data_received(pamqp_frame.marshal(nack, 1))
    with pytest.raises(PublishRefused) as refused:
        await sent[2]
    assert refused.value.outcome == "nacked"
    publisher.connection_lost(None)
