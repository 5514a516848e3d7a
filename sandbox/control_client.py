"""A client of the sandbox's control API, for tests and scripts that drive a running sandbox."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp

from sandbox.config import SandboxConfig
from sandbox.server import RunningSandbox

Json = dict[str, Any]


class SandboxControl:
    """``/_sandbox/`` over HTTP, plus the shopper's side (tokenize a card, answer a challenge)."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url.rstrip("/")
        self._session = session

    async def set_faults(self, faults: Mapping[str, Any]) -> Json:
        """Replace every fault knob, e.g. ``{"endpoints": {"authorize": {"error_rate": 1}}}``."""
        return await self._json("PUT", "/_sandbox/faults", faults)

    async def clear_faults(self) -> Json:
        return await self._json("PUT", "/_sandbox/faults", {})

    async def set_config(self, **changes: Any) -> Json:
        """Change runtime settings, e.g. ``status_shape="seed"`` or ``webhook_url=...``."""
        return await self._json("PUT", "/_sandbox/config", changes)

    async def deliveries(
        self, *, event: str | None = None, execution_id: str | None = None
    ) -> list[Json]:
        params = {"event": event, "executionId": execution_id}
        query = {k: v for k, v in params.items() if v is not None}
        body = await self._json("GET", "/_sandbox/deliveries", params=query)
        items: list[Json] = body["deliveries"]
        return items

    async def delivery(self, delivery_id: str) -> Json:
        return await self._json("GET", f"/_sandbox/deliveries/{delivery_id}")

    async def wait_for_delivery(
        self, delivery_id: str, *statuses: str, timeout: float = 5.0
    ) -> Json:
        """The delivery once the sandbox recorded one of ``statuses``; TimeoutError otherwise."""
        params = {"waitFor": ",".join(statuses), "timeout": f"{timeout:g}"}
        delivery = await self._json("GET", f"/_sandbox/deliveries/{delivery_id}", params=params)
        if delivery["status"] not in statuses:
            raise TimeoutError(f"delivery {delivery_id} is still {delivery['status']}")
        return delivery

    async def resend(self, delivery_id: str) -> Json:
        return await self._json("POST", f"/_sandbox/deliveries/{delivery_id}/resend")

    async def release(self, delivery_id: str) -> Json:
        """Send a delivery the ``hold_rate`` webhook knob is keeping."""
        return await self._json("POST", f"/_sandbox/deliveries/{delivery_id}/release")

    async def stats(self) -> Json:
        return await self._json("GET", "/_sandbox/stats")

    async def money_picture(self, execution_id: str) -> Json:
        """An execution's amounts (authorized, captured, refunded, voided) and operations."""
        return await self._json("GET", f"/_sandbox/executions/{execution_id}")

    async def expire_tokens(self) -> int:
        body = await self._json("POST", "/_sandbox/tokens/expire")
        return int(body["expired"])

    async def tokenize(self, client_init: Mapping[str, Any], card_number: str) -> str:
        """Tokenize a test card with the SDK token of a client-init payload (as the iframes do)."""
        data = json.loads(base64.b64decode(client_init["data"]))
        body = {
            "sdkToken": data["token"],
            "cardNumber": card_number,
            "expiryMonth": "12",
            "expiryYear": "2099",
            "securityCode": "123",
            "holderName": "Test Shopper",
        }
        answer = await self._json(
            "POST",
            "/public/secure-fields/tokenize",
            body,
            headers={"x-idempotency-key": str(uuid.uuid4())},
        )
        return str(answer["paymentInstrumentId"])

    async def answer_challenge(self, execution_id: str, *, complete: bool) -> str:
        """Press Complete or Fail on the hosted 3-D Secure page; returns where it redirects."""
        form = {"outcome": "complete" if complete else "fail"}
        async with self._session.post(
            f"{self.url}/public/3ds/{execution_id}", data=form, allow_redirects=False
        ) as response:
            if response.status != 303:
                raise RuntimeError(f"challenge answer got {response.status}")
            return response.headers["Location"]

    async def _json(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Json:
        async with self._session.request(
            method, self.url + path, json=body, params=params, headers=headers
        ) as response:
            payload = await response.json()
            if response.status >= 400:
                raise RuntimeError(f"{method} {path} got {response.status}: {payload}")
            result: Json = payload
            return result


class SandboxHandle(SandboxControl):
    """A sandbox running in this process: its URL, live config, and the control helpers."""

    def __init__(self, running: RunningSandbox, session: aiohttp.ClientSession) -> None:
        super().__init__(running.url, session)
        self.running = running

    @property
    def config(self) -> SandboxConfig:
        return self.running.config
