"""Health routes of every ingress app: liveness in public, readiness and metrics on an admin port.

The public port (the Internet, through the load balancer) answers only ``GET /healthz``.
``/readyz`` and ``/metrics`` are served by a separate admin server on ADMIN_HOST (loopback by
default; 0.0.0.0 in pods, where a NetworkPolicy admits only the monitoring namespace) and the
app's admin port (WEBHOOK_ADMIN_PORT, CHECKOUT_ADMIN_PORT). The admin server is a resource of
the public app's cleanup context: it starts once the app's other resources are set up, and
stops before they close.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from ingress.keys import BROKER, SETTINGS
from shared.http_server import ADMIN_SHUTDOWN_SECONDS, GuardedAppRunner, HttpLimits

ReadinessCheck = Callable[[web.Application], Awaitable[bool]]

# On the public app: the admin app, the port it is served on, and (while running) its runner.
ADMIN_APP = web.AppKey("admin_app", web.Application)
ADMIN_PORT = web.AppKey("admin_port", int)
ADMIN_RUNNER = web.AppKey("admin_runner", GuardedAppRunner)
# On the admin app: the public app whose resources the readiness checks look at, and the checks.
PUBLIC_APP = web.AppKey("public_app", web.Application)
READINESS_CHECKS = web.AppKey("readiness_checks", dict[str, ReadinessCheck])


async def broker_ready(app: web.Application) -> bool:
    """True while the app's confirm channel to RabbitMQ is open."""
    broker = app.get(BROKER)
    return broker is not None and broker.is_ready


async def healthz(_request: web.Request) -> web.Response:
    """Alive: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: every readiness check passes on the public app."""
    public = request.app[PUBLIC_APP]
    results = {name: await check(public) for name, check in request.app[READINESS_CHECKS].items()}
    ready = all(results.values())
    body = {"status": "ready" if ready else "unavailable", "checks": results}
    return web.json_response(body, status=200 if ready else 503)


def create_admin_app(
    public: web.Application, checks: Mapping[str, ReadinessCheck]
) -> web.Application:
    """GET /healthz, /readyz (``checks`` against ``public``) and /metrics."""
    admin = web.Application()
    admin[PUBLIC_APP] = public
    admin[READINESS_CHECKS] = dict(checks)
    admin.router.add_get("/healthz", healthz)
    admin.router.add_get("/readyz", readyz)
    admin.router.add_get("/metrics", make_aiohttp_handler())
    return admin


async def admin_server_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: serve the app's admin app on ADMIN_HOST and its admin port while it runs."""
    settings = app[SETTINGS]
    runner = GuardedAppRunner(
        app[ADMIN_APP],
        HttpLimits.from_settings(settings, "admin"),
        shutdown_timeout=ADMIN_SHUTDOWN_SECONDS,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.admin_host, app[ADMIN_PORT]).start()
        app[ADMIN_RUNNER] = runner
        yield
    finally:
        await runner.cleanup()


def add_health_routes(
    app: web.Application, checks: Mapping[str, ReadinessCheck], *, admin_port: int
) -> None:
    """GET /healthz on ``app``; /healthz, /readyz and /metrics on its admin server.

    Call it after the app's other cleanup contexts are added: the admin server starts last.
    """
    app.router.add_get("/healthz", healthz)
    app[ADMIN_APP] = create_admin_app(app, checks)
    app[ADMIN_PORT] = admin_port
    app.cleanup_ctx.append(admin_server_ctx)
