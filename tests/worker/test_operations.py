"""Capture, cancel and refund end to end: an operation row requested -> the operations consumer
-> the sandbox -> its webhook -> the events consumer -> the money picture -> a message on
``orders``. Operations are requested with ``request_operation`` directly, as the intake does."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import aio_pika
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sandbox.control_client import SandboxHandle
from shared.db.models import Order, PaymentOperation
from shared.messaging import ROUTING_EXECUTE_OPERATION, connect_robust
from shared.money import Money
from shared.operation_states import CaptureMode, OperationKind, OperationState
from shared.operation_store import request_operation
from shared.payrails.client import PayrailsClient
from shared.state_machine import OrderStatus
from tests.waiting import sample, wait_until
from tests.worker.conftest import FRICTIONLESS, QueueDriver, new_reference, running_worker
from tests.worker.test_asyncapi import check
from worker.consumer import HandlerConsumer
from worker.deps import Deps
from worker.operation_sweeper import sweep_operations
from worker.operations import ExecuteCommand, handle_operation
from worker.sweeper import run_pass

pytestmark = pytest.mark.usefixtures("webhook_ingress")
EUR = "EUR"


@dataclass
class Lifecycle:
    """Pays orders in the sandbox, requests operations on them and runs them through."""

    payrails: PayrailsClient
    sandbox: SandboxHandle
    sessions: async_sessionmaker[AsyncSession]
    broker: QueueDriver

    async def paid_order(self, amount: str = "20.00", *, manual: bool = True) -> tuple[str, str]:
        """An order authorized at ``amount`` (manual capture unless told); (reference, exec id)."""
        reference = new_reference()
        execution = await self.payrails.create_execution(
            merchant_reference=reference,
            holder_reference="cust_1",
            meta={},
            idempotency_key=uuid.uuid4(),
            capture_mode="manual" if manual else "Instant",
        )
        async with self.sessions.begin() as session:
            session.add(
                Order(
                    reference=reference,
                    customer_reference="cust_1",
                    amount_value=Decimal(amount),
                    currency=EUR,
                    status=OrderStatus.AUTHORIZING,
                    execution_id=execution.id,
                    capture_mode=CaptureMode.MANUAL if manual else CaptureMode.INSTANT,
                )
            )
        init = await self.payrails.client_init(
            holder_reference="cust_1", init_type="secureFields", idempotency_key=uuid.uuid4()
        )
        instrument = await self.sandbox.tokenize(init, FRICTIONLESS)
        await self.payrails.authorize(
            execution.id,
            amount=Money(Decimal(amount), EUR),
            payment_instrument_id=instrument,
            payment_method_code="card",
            return_url="http://shop.example/return",
            idempotency_key=uuid.uuid4(),
        )
        await wait_until(lambda: self.status(reference, OrderStatus.PAID))
        return reference, execution.id

    async def status(self, reference: str, wanted: OrderStatus) -> bool:
        async with self.sessions() as session:
            found = await session.scalar(select(Order.status).where(Order.reference == reference))
        return found is wanted

    async def request(
        self,
        reference: str,
        kind: OperationKind,
        amount: str | None = None,
        *,
        final: bool = True,
    ) -> int:
        money = Money(Decimal(amount), EUR) if amount is not None else None
        async with self.sessions.begin() as session:
            requested = await request_operation(
                session, reference=reference, kind=kind, amount=money, final=final
            )
            return requested.row.id

    async def execute(self, operation_id: int) -> None:
        """Publish ``operation.execute`` as the intake does (confirmed, persistent)."""
        exchange = await self.broker.channel.get_exchange(
            self.broker.names.commands_exchange, ensure=False
        )
        body = ExecuteCommand(operation_id=operation_id).to_body()
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await exchange.publish(message, ROUTING_EXECUTE_OPERATION, mandatory=True)

    async def operation(self, operation_id: int) -> PaymentOperation:
        async with self.sessions() as session:
            row = await session.get(PaymentOperation, operation_id)
        assert row is not None
        return row

    async def reaches(self, operation_id: int, state: OperationState) -> PaymentOperation:
        async def there() -> bool:
            return (await self.operation(operation_id)).state is state

        await wait_until(there)
        return await self.operation(operation_id)

    async def run(
        self,
        reference: str,
        kind: OperationKind,
        amount: str | None = None,
        *,
        final: bool = True,
        state: OperationState = OperationState.SUCCEEDED,
    ) -> PaymentOperation:
        operation_id = await self.request(reference, kind, amount, final=final)
        await self.execute(operation_id)
        return await self.reaches(operation_id, state)

    async def order(self, reference: str) -> Order:
        async with self.sessions() as session:
            order = await session.scalar(select(Order).where(Order.reference == reference))
        assert order is not None
        return order

    async def messages(self, reference: str) -> list[dict[str, Any]]:
        """Every operation message about ``reference`` once its outbox rows are published."""
        bodies = await self.broker.settled_messages_for(self.sessions, {reference})
        found = [b for b in bodies if "operation" in b]
        for body in found:  # every body as docs/asyncapi.yaml describes it
            published = {k: v for k, v in body.items() if not k.startswith("_")}
            assert check(published, "OperationMessage") == []
            assert body["messageId"] == body["_message_id"]
        return found


@contextlib.asynccontextmanager
async def running_operations(deps: Deps) -> AsyncIterator[None]:
    """The operations consumer in this process, on a connection of its own."""
    own = await connect_robust(deps.settings.amqp_url.reveal())
    channel = await own.channel(publisher_confirms=False)
    consumer = HandlerConsumer(deps, channel, deps.names.operations_queue, handle_operation)
    await consumer.start()
    try:
        yield
    finally:
        await consumer.stop()
        await own.close()


@pytest.fixture
async def lifecycle(
    payrails: PayrailsClient,
    sandbox: SandboxHandle,
    sessions: async_sessionmaker[AsyncSession],
    broker: QueueDriver,
    sandbox_deps: Deps,
) -> AsyncIterator[Lifecycle]:
    async with running_worker(sandbox_deps), running_operations(sandbox_deps):
        yield Lifecycle(payrails, sandbox, sessions, broker)


def amounts(message: dict[str, Any]) -> tuple[str, str, str]:
    totals = message["totals"]
    assert totals["currency"] == EUR
    return totals["authorized"], totals["captured"], totals["refunded"]


async def test_a_full_capture_is_executed_reconciled_and_announced(lifecycle: Lifecycle) -> None:
    reference, execution_id = await lifecycle.paid_order("20.00")

    capture = await lifecycle.run(reference, OperationKind.CAPTURE)

    assert capture.payrails_action_id is not None
    assert capture.result_code == "Success"
    order = await lifecycle.order(reference)
    assert (order.captured_value, order.refunded_value) == (Decimal("20.00"), Decimal(0))
    [message] = await lifecycle.messages(reference)
    assert message["_routing_key"] == "order.captured"
    assert amounts(message) == ("20.00", "20.00", "0.00")
    assert message["operation"]["sequence"] == capture.id
    assert message["operation"]["id"] == str(capture.idempotency_key)  # as the intake answered
    assert message["operation"]["kind"] == "capture"
    assert message["operation"]["amount"] == {"value": "20.00", "currency": EUR}
    assert message["operation"]["resultCode"] == "Success"
    picture = await lifecycle.sandbox.money_picture(execution_id)
    assert picture["captured"] == "20.00"


async def test_partial_captures_then_a_final_one_each_announce_the_captured_total(
    lifecycle: Lifecycle,
) -> None:
    reference, _ = await lifecycle.paid_order("20.00")

    await lifecycle.run(reference, OperationKind.CAPTURE, "5.00", final=False)
    await lifecycle.run(reference, OperationKind.CAPTURE, "7.00", final=False)
    last = await lifecycle.run(reference, OperationKind.CAPTURE, "3.00", final=True)

    assert last.final is True
    order = await lifecycle.order(reference)
    assert order.captured_value == Decimal("15.00")
    messages = await lifecycle.messages(reference)
    assert [m["_routing_key"] for m in messages] == ["order.captured"] * 3
    assert sorted(amounts(m)[1] for m in messages) == ["12.00", "15.00", "5.00"]
    assert len({m["_message_id"] for m in messages}) == 3


async def test_a_cancel_before_capture_voids_the_order_and_announces_it(
    lifecycle: Lifecycle,
) -> None:
    reference, execution_id = await lifecycle.paid_order("20.00")

    cancel = await lifecycle.run(reference, OperationKind.CANCEL)

    assert cancel.result_code == "Success"
    [message] = await lifecycle.messages(reference)
    assert message["_routing_key"] == "order.cancelled"
    assert amounts(message) == ("20.00", "0.00", "0.00")
    picture = await lifecycle.sandbox.money_picture(execution_id)
    assert picture["canceled"] is True
    assert picture["voided"] == "20.00"


async def test_several_partial_refunds_and_the_rest_are_each_announced(
    lifecycle: Lifecycle,
) -> None:
    reference, execution_id = await lifecycle.paid_order("20.00")
    await lifecycle.run(reference, OperationKind.CAPTURE)

    await lifecycle.run(reference, OperationKind.REFUND, "4.00")
    await lifecycle.run(reference, OperationKind.REFUND, "6.00")
    rest = await lifecycle.run(reference, OperationKind.REFUND)

    assert rest.amount_value == Decimal("10.00")
    order = await lifecycle.order(reference)
    assert (order.captured_value, order.refunded_value) == (Decimal("20.00"), Decimal("20.00"))
    messages = await lifecycle.messages(reference)
    refunds = [m for m in messages if m["_routing_key"] == "order.refunded"]
    assert sorted(amounts(m)[2] for m in refunds) == ["10.00", "20.00", "4.00"]
    picture = await lifecycle.sandbox.money_picture(execution_id)
    assert picture["refunded"] == "20.00"


async def test_a_failing_capture_amount_fails_the_operation_never_captures(
    lifecycle: Lifecycle,
) -> None:
    reference, _ = await lifecycle.paid_order("20.00")

    failed = await lifecycle.run(
        reference, OperationKind.CAPTURE, "10.91", final=False, state=OperationState.FAILED
    )

    assert failed.result_code == "GenericRejection"
    order = await lifecycle.order(reference)
    assert order.captured_value == Decimal(0)
    [message] = await lifecycle.messages(reference)
    assert message["_routing_key"] == "order.capture_failed"
    assert amounts(message) == ("20.00", "0.00", "0.00")
    assert message["operation"]["resultCode"] == "GenericRejection"


async def test_a_failing_refund_is_announced_as_refund_failed(lifecycle: Lifecycle) -> None:
    reference, _ = await lifecycle.paid_order("20.00")
    await lifecycle.run(reference, OperationKind.CAPTURE)

    await lifecycle.run(reference, OperationKind.REFUND, "5.91", state=OperationState.FAILED)

    messages = await lifecycle.messages(reference)
    assert [m["_routing_key"] for m in messages] == ["order.captured", "order.refund_failed"]
    assert amounts(messages[-1]) == ("20.00", "20.00", "0.00")


async def test_an_unknown_refund_outcome_goes_to_review_and_blocks_another_refund(
    lifecycle: Lifecycle,
) -> None:
    reference, _ = await lifecycle.paid_order("20.00")
    await lifecycle.run(reference, OperationKind.CAPTURE)

    unknown = await lifecycle.run(
        reference, OperationKind.REFUND, "5.93", state=OperationState.UNKNOWN
    )

    assert unknown.result_code == "ProviderTimeout"
    messages = await lifecycle.messages(reference)
    assert messages[-1]["_routing_key"] == "order.operation_unknown"
    order = await lifecycle.order(reference)
    assert order.refunded_value == Decimal(0)
    with pytest.raises(Exception, match="unknown"):
        await lifecycle.request(reference, OperationKind.REFUND, "1.00")


async def test_a_capture_payrails_never_completes_stays_in_flight_after_the_sweep(
    lifecycle: Lifecycle, sandbox_deps: Deps
) -> None:
    reference, _ = await lifecycle.paid_order("20.00")
    pending = await lifecycle.run(
        reference, OperationKind.CAPTURE, "10.92", final=False, state=OperationState.IN_FLIGHT
    )
    await backdate(lifecycle.sessions, pending.id)
    repolls = sample("recon_payrails_requests_total", endpoint="get_execution", status="200")

    settled = await sweep_operations(sweeping(sandbox_deps))

    assert settled == {}
    after = await lifecycle.operation(pending.id)
    assert after.state is OperationState.IN_FLIGHT
    assert after.updated_at > pending.updated_at  # claimed: the next re-poll waits a threshold
    assert sample("recon_payrails_requests_total", endpoint="get_execution", status="200") > (
        repolls
    )


async def test_the_sweeper_settles_a_capture_whose_webhook_was_lost(
    lifecycle: Lifecycle, sandbox_deps: Deps
) -> None:
    reference, execution_id = await lifecycle.paid_order("20.00")
    await lifecycle.sandbox.set_faults({"webhooks": {"drop_rate": 1}})
    pending = await lifecycle.run(
        reference, OperationKind.CAPTURE, "8.00", final=False, state=OperationState.IN_FLIGHT
    )

    async def captured_at_payrails() -> bool:
        picture = await lifecycle.sandbox.money_picture(execution_id)
        return bool(picture["captured"] == "8.00")

    await wait_until(captured_at_payrails)
    await backdate(lifecycle.sessions, pending.id)
    settled = await sweep_operations(sweeping(sandbox_deps))

    assert settled == {pending.id: OperationState.SUCCEEDED}
    [message] = await lifecycle.messages(reference)
    assert message["_routing_key"] == "order.captured"
    assert message["cause"] == "sweep"
    assert amounts(message) == ("20.00", "8.00", "0.00")


async def test_a_redelivered_command_does_not_call_payrails_twice(lifecycle: Lifecycle) -> None:
    reference, _ = await lifecycle.paid_order("20.00")
    capture = await lifecycle.run(reference, OperationKind.CAPTURE, "6.00", final=False)
    before = sample("recon_operations_executed_total", kind="capture", outcome="skipped")

    await lifecycle.execute(capture.id)
    await wait_until(
        lambda: (
            sample("recon_operations_executed_total", kind="capture", outcome="skipped") > before
        )
    )

    stats = await lifecycle.sandbox.stats()
    assert stats["requests"]["capture"] == 1
    assert (await lifecycle.operation(capture.id)).state is OperationState.SUCCEEDED
    assert len(await lifecycle.messages(reference)) == 1


async def test_a_duplicated_operation_webhook_changes_nothing_twice(
    lifecycle: Lifecycle,
) -> None:
    reference, execution_id = await lifecycle.paid_order("20.00")
    await lifecycle.run(reference, OperationKind.CAPTURE)
    refund = await lifecycle.run(reference, OperationKind.REFUND, "4.00")
    [delivery] = [
        d
        for d in await lifecycle.sandbox.deliveries(execution_id=execution_id)
        if d["body"]["details"]["action"] == "refund"
    ]
    ignored = sample(
        "recon_operations_reconciled_total", kind="refund", state="succeeded", outcome="ignored"
    )

    await lifecycle.sandbox.resend(delivery["id"])  # the same body: the inbox's duplicate
    retimed = {**delivery["body"], "time": "2099-01-01T00:00:00.000Z"}  # another event id
    await lifecycle.broker.publish_event(retimed)
    await wait_until(
        lambda: (
            sample(
                "recon_operations_reconciled_total",
                kind="refund",
                state="succeeded",
                outcome="ignored",
            )
            > ignored
        )
    )

    order = await lifecycle.order(reference)
    assert order.refunded_value == Decimal("4.00")
    assert (await lifecycle.operation(refund.id)).state is OperationState.SUCCEEDED
    messages = await lifecycle.messages(reference)
    assert [m["_routing_key"] for m in messages] == ["order.captured", "order.refunded"]


async def test_reordered_refund_webhooks_settle_each_refund_once(lifecycle: Lifecycle) -> None:
    reference, execution_id = await lifecycle.paid_order("20.00")
    await lifecycle.run(reference, OperationKind.CAPTURE)
    await lifecycle.sandbox.set_faults({"webhooks": {"hold_rate": 1}})
    first = await lifecycle.run(
        reference, OperationKind.REFUND, "3.00", state=OperationState.IN_FLIGHT
    )
    second = await lifecycle.run(
        reference, OperationKind.REFUND, "2.00", state=OperationState.IN_FLIGHT
    )

    async def held() -> list[dict[str, Any]]:
        items = await lifecycle.sandbox.deliveries(execution_id=execution_id)
        return [d for d in items if d["status"] == "held"]

    await wait_until(lambda: _count(held, 2))
    await lifecycle.sandbox.clear_faults()
    for delivery in sorted(await held(), key=lambda d: d["createdAt"], reverse=True):
        await lifecycle.sandbox.release(delivery["id"])
    await lifecycle.reaches(first.id, OperationState.SUCCEEDED)
    await lifecycle.reaches(second.id, OperationState.SUCCEEDED)

    order = await lifecycle.order(reference)
    assert order.refunded_value == Decimal("5.00")
    messages = await lifecycle.messages(reference)
    refunds = [m for m in messages if m["_routing_key"] == "order.refunded"]
    assert {m["operation"]["sequence"] for m in refunds} == {first.id, second.id}
    assert len(refunds) == 2


async def test_payrails_instant_capture_is_recorded_as_a_capture(lifecycle: Lifecycle) -> None:
    reference, _ = await lifecycle.paid_order("12.50", manual=False)

    async def captured() -> bool:
        return (await lifecycle.order(reference)).captured_value == Decimal("12.50")

    await wait_until(captured)
    async with lifecycle.sessions() as session:
        order = await lifecycle.order(reference)
        rows = list(
            await session.scalars(
                select(PaymentOperation).where(PaymentOperation.order_id == order.id)
            )
        )
    [capture] = rows
    assert (capture.kind, capture.state) == (OperationKind.CAPTURE, OperationState.SUCCEEDED)
    assert capture.payrails_action_id is not None
    [message] = await lifecycle.messages(reference)
    assert message["_routing_key"] == "order.captured"
    assert amounts(message) == ("12.50", "12.50", "0.00")


async def _count(items: Callable[[], Awaitable[list[Any]]], count: int) -> bool:
    return len(await items()) >= count


async def backdate(sessions: async_sessionmaker[AsyncSession], operation_id: int) -> None:
    """Make an operation look untouched for ten days, past the threshold of ``sweeping``."""
    async with sessions.begin() as session:
        await session.execute(
            update(PaymentOperation)
            .where(PaymentOperation.id == operation_id)
            .values(updated_at=PaymentOperation.updated_at - timedelta(days=10))
        )


def sweeping(deps: Deps) -> Deps:
    """A sweeper whose thresholds (five days) only this test's backdated rows have passed, so it
    leaves whatever other tests of the run stored alone."""
    days = timedelta(days=5).total_seconds()
    update = {"sweeper_operation_stuck_after_seconds": days, "sweeper_stuck_after_seconds": days}
    return replace(deps, settings=deps.settings.model_copy(update=update))


async def test_no_answer_after_every_delay_tier_makes_the_capture_unknown_not_resent(
    lifecycle: Lifecycle, settings: Any
) -> None:
    reference, execution_id = await lifecycle.paid_order("20.00")
    await lifecycle.sandbox.set_faults({"endpoints": {"capture": {"error_rate": 1}}})
    retried = sample("recon_operations_executed_total", kind="capture", outcome="retried")

    unknown = await lifecycle.run(
        reference, OperationKind.CAPTURE, "5.00", final=False, state=OperationState.UNKNOWN
    )

    tiers = len(settings.worker_retry_delays_seconds)
    assert sample("recon_operations_executed_total", kind="capture", outcome="retried") == (
        retried + tiers
    )
    assert unknown.reason is not None
    assert "no answer from Payrails" in unknown.reason
    [message] = await lifecycle.messages(reference)
    assert message["_routing_key"] == "order.operation_unknown"
    assert message["cause"] == "operation"
    assert message["operation"]["reason"] == unknown.reason
    await lifecycle.sandbox.clear_faults()
    calls = (await lifecycle.sandbox.stats())["requests"]["capture"]
    skipped = sample("recon_operations_executed_total", kind="capture", outcome="skipped")
    await lifecycle.execute(unknown.id)  # a late redelivery: still no second call
    await wait_until(
        lambda: (
            sample("recon_operations_executed_total", kind="capture", outcome="skipped") > skipped
        )
    )
    assert (await lifecycle.sandbox.stats())["requests"]["capture"] == calls
    assert (await lifecycle.sandbox.money_picture(execution_id))["operations"] == []


async def test_a_capture_payrails_refuses_as_not_allowed_fails_with_its_code(
    lifecycle: Lifecycle,
) -> None:
    reference, execution_id = await lifecycle.paid_order("20.00")
    operation_id = await lifecycle.request(reference, OperationKind.CAPTURE)
    # Someone captured everything at Payrails meanwhile: nothing is left to capture.
    await lifecycle.payrails.capture(execution_id, idempotency_key=uuid.uuid4())

    async def captured_elsewhere() -> bool:
        return bool((await lifecycle.sandbox.money_picture(execution_id))["captured"] == "20.00")

    await wait_until(captured_elsewhere)
    await lifecycle.execute(operation_id)
    failed = await lifecycle.reaches(operation_id, OperationState.FAILED)

    assert failed.result_code == "workflow.action.not-allowed"
    messages = await lifecycle.messages(reference)
    refusal = [m for m in messages if m["operation"]["sequence"] == operation_id]
    assert [(m["_routing_key"], m["cause"]) for m in refusal] == [
        ("order.capture_failed", "operation")
    ]

    async def recorded_as_payrails_own() -> bool:
        return (await lifecycle.order(reference)).captured_value == Decimal("20.00")

    await wait_until(recorded_as_payrails_own)  # the other capture's webhook, once ours failed


async def test_the_seed_status_shape_settles_captures_and_refunds_too(
    lifecycle: Lifecycle,
) -> None:
    await lifecycle.sandbox.set_config(status_shape="seed")
    reference, _ = await lifecycle.paid_order("20.00")

    await lifecycle.run(reference, OperationKind.CAPTURE)
    await lifecycle.run(reference, OperationKind.REFUND, "5.00")
    await lifecycle.run(reference, OperationKind.REFUND, "5.91", state=OperationState.FAILED)

    order = await lifecycle.order(reference)
    assert (order.captured_value, order.refunded_value) == (Decimal("20.00"), Decimal("5.00"))
    messages = await lifecycle.messages(reference)
    assert [m["_routing_key"] for m in messages] == [
        "order.captured",
        "order.refunded",
        "order.refund_failed",
    ]


async def test_the_sweeper_sends_the_command_of_an_operation_left_requested_again(
    lifecycle: Lifecycle, sandbox_deps: Deps
) -> None:
    reference, _ = await lifecycle.paid_order("20.00")
    operation_id = await lifecycle.request(reference, OperationKind.CAPTURE, "9.00", final=False)
    await backdate(lifecycle.sessions, operation_id)  # its command was lost on the way

    result = await run_pass(sweeping(sandbox_deps))

    assert result is not None
    assert result.resent == (operation_id,)
    capture = await lifecycle.reaches(operation_id, OperationState.SUCCEEDED)
    assert capture.result_code == "Success"
    assert (await lifecycle.sandbox.stats())["requests"]["capture"] == 1
    [message] = await lifecycle.messages(reference)
    assert message["_routing_key"] == "order.captured"
