"""PAYRAILS_CAPTURE_MODE: the checkout creates each execution in the configured capture mode,
stores it on the order before the call, and the money rules read it from there."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ingress.checkout.capture_mode import fix_capture_mode
from ingress.checkout.place_order import CREATE_EXECUTION
from sandbox.control_client import SandboxHandle
from shared.db.models import Order
from shared.operation_states import CaptureMode
from shared.order_store import ensure_idempotency_key, lock_order
from tests.checkout.conftest import (
    FRICTIONLESS,
    MERCHANT_AUTH,
    AuthorizeConsumer,
    new_reference,
    order_body,
    order_row,
)
from tests.settings import Settings

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def capture_mode() -> CaptureMode:
    return CaptureMode.INSTANT


@pytest.fixture
def checkout_settings(checkout_settings: Settings, capture_mode: CaptureMode) -> Settings:
    return checkout_settings.model_copy(update={"payrails_capture_mode": capture_mode})


async def pay(checkout: Client, sandbox: SandboxHandle) -> str:
    body = await order_body(checkout, sandbox, FRICTIONLESS)
    response = await checkout.post("/checkout/place-order", json=body)
    answer = await response.json()
    assert (response.status, answer["status"]) == (200, "authorized"), answer
    return str(body["orderReference"])


async def capture(checkout: Client, reference: str) -> tuple[int, dict[str, object]]:
    response = await checkout.post(
        f"/merchant/orders/{reference}/captures",
        json={"amount": {"value": "10.00", "currency": "EUR"}, "final": False},
        headers={**MERCHANT_AUTH, "Idempotency-Key": str(uuid.uuid4())},
    )
    answer: dict[str, object] = await response.json(content_type=None)
    return response.status, answer


def test_payrails_instant_capture_is_the_default_capture_mode() -> None:
    assert Settings().payrails_capture_mode is CaptureMode.INSTANT


@pytest.mark.parametrize("capture_mode", [CaptureMode.MANUAL])
async def test_manual_mode_creates_a_manual_execution_and_the_merchant_may_capture(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference = await pay(checkout, sandbox)

    order = await order_row(sessions, reference)
    assert order.capture_mode is CaptureMode.MANUAL
    assert order.execution_id is not None
    picture = await sandbox.money_picture(order.execution_id)
    assert picture["captureMode"]["mode"] == "manual"
    assert Decimal(picture["captured"]) == 0
    status, answer = await capture(checkout, reference)
    assert status == 202, answer


async def test_instant_mode_creates_an_instant_execution_and_a_merchant_capture_is_refused(
    checkout: Client,
    sandbox: SandboxHandle,
    authorize_consumer: AuthorizeConsumer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference = await pay(checkout, sandbox)

    order = await order_row(sessions, reference)
    assert order.capture_mode is CaptureMode.INSTANT
    assert order.execution_id is not None
    picture = await sandbox.money_picture(order.execution_id)
    assert picture["captureMode"]["mode"] == "instant"
    status, answer = await capture(checkout, reference)
    assert (status, answer["error"]) == (409, "capture_not_manual"), answer


async def test_an_order_keeps_the_mode_stored_with_its_execution_key_when_the_setting_changes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    order = Order(
        reference=new_reference(),
        customer_reference="customer-1",
        amount_value=Decimal("12.00"),
        currency="EUR",
        status="created",
    )
    async with sessions.begin() as session:
        session.add(order)
    async with sessions.begin() as session:
        locked = await lock_order(session, order_id=order.id)
        assert locked is not None
        first = await fix_capture_mode(session, locked, CaptureMode.MANUAL, CREATE_EXECUTION)
        await ensure_idempotency_key(session, order.id, CREATE_EXECUTION)
    async with sessions.begin() as session:  # a retry after the setting changed
        locked = await lock_order(session, order_id=order.id)
        assert locked is not None
        retry = await fix_capture_mode(session, locked, CaptureMode.INSTANT, CREATE_EXECUTION)

    assert (first, retry) == (CaptureMode.MANUAL, CaptureMode.MANUAL)
    assert (await order_row(sessions, order.reference)).capture_mode is CaptureMode.MANUAL
