"""Drives capture, cancel and refund through the sandbox's HTTP API, as a raw client sees them."""

from __future__ import annotations

import json
import uuid
from typing import Any

from multidict import CIMultiDictProxy

from sandbox.control_client import SandboxHandle
from tests.sandbox.test_api import EXECUTIONS, Raw

APPROVE = "4242424242424242"
DECLINE = "4000000000009995"
Answer = tuple[int, Any, CIMultiDictProxy[str]]


def money(value: str, currency: str = "EUR") -> dict[str, str]:
    return {"value": value, "currency": currency}


class Operations:
    """One test's executions: authorize them, act on them, and read them back."""

    def __init__(self, raw: Raw, sandbox: SandboxHandle) -> None:
        self.raw = raw
        self.sandbox = sandbox

    async def create(self, override: dict[str, Any] | None = None) -> Answer:
        body: dict[str, Any] = {
            "merchantReference": f"order-{uuid.uuid4().hex[:8]}",
            "holderReference": "c",
            "meta": {},
        }
        if override is not None:
            body["workflowConfigOverride"] = override
        return await self.raw.call("POST", EXECUTIONS, body, key=str(uuid.uuid4()))

    async def authorized(
        self,
        value: str = "20.00",
        currency: str = "EUR",
        *,
        mode: str | None = "manual",
        delay: str | None = None,
        card: str = APPROVE,
    ) -> str:
        """An execution whose authorize completed; ``mode`` None follows the run's capture mode."""
        override = {"captureMode": mode} if mode else None
        if override is not None and delay is not None:
            override["captureDelay"] = delay
        status, created, _ = await self.create(override)
        assert status == 201, created
        execution_id: str = created["id"]
        _, init = await self.raw.init()
        instrument = await self.sandbox.tokenize(init, card)
        amount = money(value, currency)
        body = {
            "amount": amount,
            "returnInfo": {"success": "https://shop.example/return"},
            "paymentComposition": [{"paymentInstrumentId": instrument, "amount": amount}],
        }
        status, ack, _ = await self.raw.call(
            "POST", f"{EXECUTIONS}/{execution_id}/authorize", body, key=str(uuid.uuid4())
        )
        assert status == 202, ack
        await self.get(execution_id, wait_while=("created", "authorizeRequested"))
        return execution_id

    async def act(
        self, execution_id: str, action: str, body: dict[str, Any], key: str | None = None
    ) -> Answer:
        path = f"{EXECUTIONS}/{execution_id}/{action}"
        return await self.raw.call("POST", path, body, key=key or str(uuid.uuid4()))

    async def done(self, execution_id: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """Request an action, assert its 202, and return the execution once it left Requested."""
        status, ack, _ = await self.act(execution_id, action, body)
        assert status == 202, ack
        return await self.get(execution_id, wait_while=(f"{action}Requested",))

    async def get(self, execution_id: str, wait_while: tuple[str, ...] = ()) -> dict[str, Any]:
        path = f"{EXECUTIONS}/{execution_id}"
        if wait_while:
            path += f"?waitWhile[status]={json.dumps(list(wait_while))}"
        status, body, _ = await self.raw.call("GET", path)
        assert status == 200, body
        result: dict[str, Any] = body
        return result

    async def codes(self, execution_id: str) -> list[str]:
        """The documented status codes in time order."""
        body = await self.get(execution_id)
        return [entry["code"] for entry in sorted(body["status"], key=lambda e: e["time"])]

    async def picture(self, execution_id: str) -> dict[str, Any]:
        return await self.sandbox.money_picture(execution_id)

    async def completions(self, execution_id: str, action: str) -> list[dict[str, Any]]:
        """The ``details`` of every executionActionCompleted for this action, in order."""
        deliveries = await self.sandbox.deliveries(
            event="executionActionCompleted", execution_id=execution_id
        )
        details = [d["body"]["details"] for d in deliveries]
        return [d for d in details if d["action"] == action]
