"""The worker's admin server: /healthz checks AMQP and the database; /metrics for Prometheus.

It listens on ADMIN_HOST (loopback by default; 0.0.0.0 in pods, where a NetworkPolicy admits
only the monitoring namespace) and WORKER_METRICS_PORT, the worker's admin port.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from aio_pika.abc import AbstractConnection
from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.config import WorkerSettings
from shared.http_server import ADMIN_SHUTDOWN_SECONDS, GuardedAppRunner, HttpLimits

Check = Callable[[], Awaitable[bool]]
CHECKS = web.AppKey("checks", dict[str, Check])
_CHECK_TIMEOUT = 2.0


def amqp_check(connection: AbstractConnection) -> Check:
    """True while the worker's connection to RabbitMQ is open."""

    async def check() -> bool:
        return not connection.is_closed

    return check


def database_check(sessions: async_sessionmaker[AsyncSession]) -> Check:
    """True when the database answers ``SELECT 1``."""

    async def check() -> bool:
        async with sessions() as session:
            await session.execute(text("SELECT 1"))
        return True

    return check


async def _run(check: Check) -> bool:
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT):
            return await check()
    except Exception:  # any failure of a dependency means "not healthy", never a 500
        return False


async def healthz(request: web.Request) -> web.Response:
    checks = request.app[CHECKS]
    results = dict(zip(checks, await asyncio.gather(*map(_run, checks.values())), strict=True))
    healthy = all(results.values())
    body = {"status": "ok" if healthy else "unavailable", "checks": results}
    return web.json_response(body, status=200 if healthy else 503)


def create_health_app(checks: Mapping[str, Check]) -> web.Application:
    """GET /healthz (every dependency answers) and GET /metrics."""
    app = web.Application()
    app[CHECKS] = dict(checks)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", make_aiohttp_handler())
    return app


async def start_health_server(
    settings: WorkerSettings, checks: Mapping[str, Check]
) -> web.AppRunner:
    """Serve the health app on ADMIN_HOST:WORKER_METRICS_PORT; the caller cleans it up."""
    runner = GuardedAppRunner(
        create_health_app(checks),
        HttpLimits.from_settings(settings, "admin"),
        shutdown_timeout=ADMIN_SHUTDOWN_SECONDS,
    )
    await runner.setup()
    await web.TCPSite(runner, settings.admin_host, settings.worker_metrics_port).start()
    return runner
