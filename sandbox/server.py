"""Running the sandbox app on a socket: for ``python -m sandbox`` and for tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from sandbox.app import create_sandbox_app
from sandbox.config import SandboxConfig
from sandbox.keys import STATE


@dataclass(frozen=True, slots=True)
class RunningSandbox:
    url: str
    app: web.Application

    @property
    def config(self) -> SandboxConfig:
        """The live config (the control API may have changed it)."""
        return self.app[STATE].config


@contextlib.asynccontextmanager
async def running_sandbox(
    config: SandboxConfig, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningSandbox]:
    """Serve the sandbox until the block exits; port 0 picks a free port."""
    app = create_sandbox_app(config)
    # A test ends with long-polls of its own still open: waiting out their max_wait would only
    # slow every test down, and nobody reads their answers any more.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.05)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield RunningSandbox(url=f"http://{bound_host}:{bound_port}", app=app)
    finally:
        await runner.cleanup()
