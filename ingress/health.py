"""Liveness, readiness and Prometheus routes, shared by every ingress app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from ingress.keys import BROKER

ReadinessCheck = Callable[[web.Application], Awaitable[bool]]


async def broker_ready(app: web.Application) -> bool:
    """True while the app's confirm channel to RabbitMQ is open."""
    broker = app.get(BROKER)
    return broker is not None and broker.is_ready


def add_health_routes(app: web.Application, checks: Mapping[str, ReadinessCheck]) -> None:
    """GET /healthz (alive), GET /readyz (every check passes) and GET /metrics."""

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        results = {name: await check(request.app) for name, check in checks.items()}
        ready = all(results.values())
        body = {"status": "ready" if ready else "unavailable", "checks": results}
        return web.json_response(body, status=200 if ready else 503)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", make_aiohttp_handler())
