"""A webhook receiver for tests: a tiny aiohttp app that records every delivery."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Received:
    body: bytes
    signature: str | None

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    url: str
    queue: asyncio.Queue[Received]
    answers: list[int] = field(default_factory=list)  # statuses to answer first, then 200
    # How many of the next requests to leave unanswered (the sender's timeout ends them).
    stalls: int = 0
    unstall: asyncio.Event = field(default_factory=asyncio.Event)

    async def next(self, timeout: float = 5.0) -> Received:
        return await asyncio.wait_for(self.queue.get(), timeout)


@contextlib.asynccontextmanager
async def running_receiver() -> AsyncIterator[Receiver]:
    queue: asyncio.Queue[Received] = asyncio.Queue()
    receiver = Receiver(url="", queue=queue)

    async def handle(request: web.Request) -> web.Response:
        queue.put_nowait(Received(await request.read(), request.headers.get("X-Signature")))
        if receiver.stalls > 0:
            receiver.stalls -= 1
            await receiver.unstall.wait()
        return web.Response(status=receiver.answers.pop(0) if receiver.answers else 200)

    app = web.Application()
    app.router.add_post("/webhooks/payrails", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        receiver.url = f"http://{host}:{port}/webhooks/payrails"
        yield receiver
    finally:
        receiver.unstall.set()
        await runner.cleanup()
