"""A webhook tap: the sandbox delivers here, the tap records the exact bytes and answers 200.

Scenarios that replay, duplicate or reorder Payrails' deliveries point the sandbox's webhook URL
at the tap, then send the recorded deliveries to the ingress themselves.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from shared.events import derive_event_id, parse_object
from tests.e2e.drivers import Delivery
from tests.ports import free_port


@dataclass(frozen=True)
class Captured:
    event: str
    execution_id: str | None
    delivery: Delivery
    received_at: float


@dataclass
class WebhookTap:
    captured: list[Captured] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/payrails"

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        data = parse_object(body)
        details = data.get("details") or {}
        execution = details.get("execution") or {} if isinstance(details, dict) else {}
        delivery = Delivery(derive_event_id(data), body, request.headers.get("X-Signature", ""))
        self.captured.append(
            Captured(str(data["event"]), execution.get("id"), delivery, time.monotonic())
        )
        return web.json_response({"status": "captured"})

    def for_executions(self, execution_ids: set[str]) -> list[Captured]:
        return [c for c in self.captured if c.execution_id in execution_ids]


@asynccontextmanager
async def running_tap() -> AsyncIterator[WebhookTap]:
    tap = WebhookTap(port=free_port())
    app = web.Application()
    app.router.add_post("/webhooks/payrails", tap._receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", tap.port)
    await site.start()
    try:
        yield tap
    finally:
        await runner.cleanup()
