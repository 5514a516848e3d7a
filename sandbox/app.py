"""The sandbox app factory: routes, middlewares, and the webhook client in a cleanup context."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from sandbox import control, merchant, public
from sandbox.config import SandboxConfig
from sandbox.engine import PaymentEngine
from sandbox.idempotency import IdempotencyStore
from sandbox.keys import ENGINE, IDEMPOTENCY, STATE, WEBHOOKS
from sandbox.middlewares import (
    auth_middleware,
    error_middleware,
    fault_middleware,
    idempotency_middleware,
)
from sandbox.state import SandboxState
from sandbox.webhooks import WebhookDispatcher

EXECUTIONS = "/merchant/workflows/{workflow}/executions"
EXECUTION = EXECUTIONS + "/{execution_id}"


def create_sandbox_app(config: SandboxConfig) -> web.Application:
    """The whole sandbox: merchant API, public pages, control API."""
    app = web.Application(
        middlewares=[fault_middleware, error_middleware, auth_middleware, idempotency_middleware]
    )
    app[STATE] = SandboxState(config)
    app[IDEMPOTENCY] = IdempotencyStore()
    app.cleanup_ctx.append(_webhooks_ctx)
    app.on_response_prepare.append(public.add_cors)
    _setup_routes(app)
    _setup_secure_fields(app)
    return app


async def _webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """The webhook client and the engine's background tasks live exactly as long as the app."""
    async with aiohttp.ClientSession() as session:
        app[WEBHOOKS] = WebhookDispatcher(app[STATE], session)
        app[ENGINE] = PaymentEngine(app[STATE], app[WEBHOOKS])
        yield
        await app[ENGINE].close()
        await app[WEBHOOKS].close()


def _setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/auth/token/{client_id}", merchant.issue_token, name="token")
    r.add_post("/merchant/client/init", merchant.client_init, name="client_init")
    r.add_post(EXECUTIONS, merchant.create_execution, name="create_execution")
    r.add_get(EXECUTION, merchant.get_execution, name="get_execution", allow_head=False)
    r.add_post(EXECUTION + "/authorize", merchant.authorize, name="authorize")
    for action in ("capture", "cancel", "refund"):
        r.add_post(f"{EXECUTION}/{action}", merchant.follow_up_action, name=action)
    r.add_post(public.TOKENIZE_PATH, public.tokenize, name="tokenize")
    r.add_route("OPTIONS", public.TOKENIZE_PATH, public.tokenize_preflight)
    r.add_get("/public/3ds/{execution_id}", public.threeds_page, name="threeds_page")
    r.add_post("/public/3ds/{execution_id}", public.threeds_submit, name="threeds_submit")
    r.add_get("/public/consumer-wait/{execution_id}", public.consumer_wait, name="consumer_wait")
    r.add_get("/_sandbox/deliveries", control.list_deliveries)
    r.add_get("/_sandbox/deliveries/{delivery_id}", control.get_delivery, allow_head=False)
    r.add_post("/_sandbox/deliveries/{delivery_id}/resend", control.resend_delivery)
    r.add_post("/_sandbox/deliveries/{delivery_id}/release", control.release_delivery)
    r.add_get("/_sandbox/faults", control.get_faults)
    r.add_put("/_sandbox/faults", control.put_faults)
    r.add_get("/_sandbox/stats", control.get_stats)
    r.add_get("/_sandbox/executions/{execution_id}", control.get_execution, allow_head=False)
    r.add_get("/_sandbox/config", control.get_config)
    r.add_put("/_sandbox/config", control.put_config)
    r.add_post("/_sandbox/tokens/expire", control.expire_tokens)
    r.add_get("/healthz", control.health)


def _setup_secure_fields(app: web.Application) -> None:
    """Mount the Secure Fields stand-in (SDK and iframes) when that module is present."""
    if importlib.util.find_spec("sandbox.secure_fields") is None:
        return
    module = importlib.import_module("sandbox.secure_fields")
    setup: Callable[[web.Application], None] = module.setup_secure_fields_routes
    setup(app)
