"""Publishes sharing a message id (ingress.same_id): the gate alone, each ``send`` held by hand.

What the broker does with a publish is covered in tests/ingress; here ``send`` stands for a
publish awaiting its confirm, so the test decides when and how it settles.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from ingress.same_id import SameIdGate
from shared.errors import PublishError
from tests.waiting import sample, wait_until

EXCHANGE, ROUTE = "payrails.webhooks", "executionActionCompleted"


class HeldSend:
    """A ``send`` that waits until the test settles it; counts the publishes it stands for."""

    def __init__(self) -> None:
        self.calls = 0
        self.active = 0
        self.overlapped = False
        self.outcome: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

    async def __call__(self) -> None:
        self.calls += 1
        self.active += 1
        self.overlapped |= self.active > 1
        try:
            reason = await asyncio.shield(self.outcome)
        finally:
            self.active -= 1
        if reason is not None:
            raise PublishError(reason)


def publish(
    gate: SameIdGate, body: bytes, send: Callable[[], Awaitable[None]], *, seconds: float = 10.0
) -> asyncio.Task[None]:
    deadline = asyncio.get_running_loop().time() + seconds
    return asyncio.create_task(
        gate.publish("evt-1", EXCHANGE, ROUTE, body, deadline=deadline, send=send)
    )


async def test_identical_publishes_while_one_is_in_flight_take_its_confirm_unsent() -> None:
    gate, send = SameIdGate(), HeldSend()
    before = sample("recon_broker_publishes_coalesced_total", exchange=EXCHANGE)
    first = publish(gate, b"{}", send)
    copies = [publish(gate, b"{}", send) for _ in range(31)]
    await wait_until(lambda: gate.waiting("evt-1") == 31)

    send.outcome.set_result(None)  # the broker confirms the first
    await asyncio.gather(first, *copies)

    assert send.calls == 1
    assert sample("recon_broker_publishes_coalesced_total", exchange=EXCHANGE) == before + 31
    assert gate.waiting("evt-1") is None


async def test_identical_publishes_while_one_is_in_flight_take_its_failure() -> None:
    gate, send = SameIdGate(), HeldSend()
    first = publish(gate, b"{}", send)
    copy = publish(gate, b"{}", send)
    await wait_until(lambda: gate.waiting("evt-1") == 1)

    send.outcome.set_result("returned")

    for task in (first, copy):
        with pytest.raises(PublishError) as refused:
            await task
        assert refused.value.reason == "returned"
    assert send.calls == 1


async def test_other_bytes_under_the_same_id_wait_for_the_one_in_flight_then_are_sent() -> None:
    gate, send = SameIdGate(), HeldSend()
    first = publish(gate, b'{"v":1}', send)
    other = publish(gate, b'{"v":2}', send)
    await wait_until(lambda: gate.waiting("evt-1") == 1)
    assert send.calls == 1

    send.outcome.set_result(None)
    await asyncio.gather(first, other)

    assert send.calls == 2
    assert not send.overlapped  # never two publishes of one id on the channel at once


async def test_a_copy_waiting_for_an_abandoned_publish_sends_its_own() -> None:
    gate, send = SameIdGate(), HeldSend()
    first = publish(gate, b"{}", send)
    copy = publish(gate, b"{}", send)
    await wait_until(lambda: gate.waiting("evt-1") == 1)

    first.cancel()  # its caller went away before the broker answered
    await wait_until(lambda: send.calls == 2)
    send.outcome.set_result(None)

    await copy
    assert first.cancelled()


async def test_waiting_past_the_deadline_is_a_timeout_and_leaves_the_one_in_flight_alone() -> None:
    gate, send = SameIdGate(), HeldSend()
    first = publish(gate, b"{}", send)
    await wait_until(lambda: gate.waiting("evt-1") == 0)

    with pytest.raises(PublishError) as refused:
        await publish(gate, b"{}", send, seconds=0.05)

    assert refused.value.reason == "timeout"
    assert not first.done()
    send.outcome.set_result(None)
    await first
