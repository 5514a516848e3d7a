"""Request plumbing: fault injection, Payrails' error envelope, bearer auth, idempotency."""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from sandbox.errors import ApiError
from sandbox.faults import Decision
from sandbox.idempotency import run_idempotent
from sandbox.keys import IDEMPOTENCY, STATE

log = structlog.get_logger(__name__)

# Route names are the endpoint names of the fault knobs and of the stats.
AUTHENTICATED = frozenset(
    {
        "client_init",
        "create_execution",
        "get_execution",
        "authorize",
        "capture",
        "cancel",
        "refund",
    }
)
IDEMPOTENT = frozenset(
    {"client_init", "create_execution", "authorize", "capture", "cancel", "refund", "tokenize"}
)
# What a misbehaving proxy in front of Payrails might answer instead of the JSON body.
GARBLED_BODY = "<html><body>upstream answered something else</body></html>"
FAULTABLE = AUTHENTICATED | {"token", "tokenize", "threeds_page", "threeds_submit"}


def endpoint_of(request: web.Request) -> str | None:
    name = request.match_info.route.name
    return name if name in FAULTABLE else None


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply this endpoint's fault knobs around the real handling."""
    endpoint = endpoint_of(request)
    if endpoint is None:
        return await handler(request)
    state = request.app[STATE]
    state.stats.requests[endpoint] += 1
    decision = state.faults.decide(endpoint)
    early = await _before(decision, endpoint, request)
    if early is not None:
        return early
    response = await handler(request)
    if decision.garble_response:
        state.stats.faults[f"{endpoint}.garble_response"] += 1
        log.info("sandbox.fault.garble_response", endpoint=endpoint, http_status=response.status)
        return web.Response(status=response.status, text=GARBLED_BODY, content_type="text/html")
    if decision.drop_response:
        state.stats.faults[f"{endpoint}.drop_response"] += 1
        log.info("sandbox.fault.drop_response", endpoint=endpoint, http_status=response.status)
        if request.transport is not None:
            request.transport.abort()
    return response


async def _before(decision: Decision, endpoint: str, request: web.Request) -> web.Response | None:
    stats = request.app[STATE].stats
    if decision.latency_seconds:
        await asyncio.sleep(decision.latency_seconds)
    if decision.hang_seconds is not None:
        stats.faults[f"{endpoint}.hang"] += 1
        await asyncio.sleep(decision.hang_seconds)
        return ApiError(504, "request.timeout", "the request timed out").response()
    if decision.unauthorized:
        stats.faults[f"{endpoint}.unauthorized"] += 1
        return _unauthorized(endpoint)
    if decision.retry_after_seconds is not None:
        stats.faults[f"{endpoint}.rate_limit"] += 1
        response = ApiError(429, "request.rate-limit", "too many requests").response()
        response.headers["Retry-After"] = f"{decision.retry_after_seconds:g}"
        return response
    if decision.error:
        stats.faults[f"{endpoint}.error"] += 1
        return ApiError(503, "service.unavailable", "the service is unavailable").response()
    return None


def _unauthorized(endpoint: str) -> web.Response:
    """A refused credential, in the token endpoint's OAuth shape or Payrails' envelope."""
    if endpoint == "token":
        body = {"error": "invalid_client", "error_description": "unknown client or wrong secret"}
        return web.json_response(body, status=401)
    return ApiError(401, "request.unauthorized", "a valid bearer token is required").response()


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """ApiError -> Payrails' error envelope."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Merchant endpoints need a valid, unexpired bearer token."""
    if request.match_info.route.name in AUTHENTICATED:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not request.app[STATE].token_valid(token.strip()):
            raise ApiError(401, "request.unauthorized", "a valid bearer token is required")
    return await handler(request)


@web.middleware
async def idempotency_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Writes need ``x-idempotency-key``; a repeated key replays the first answer."""
    name = request.match_info.route.name
    if name not in IDEMPOTENT:
        return await handler(request)
    stats = request.app[STATE].stats

    def replayed() -> None:
        stats.idempotent_replays += 1

    refuse = request.app[STATE].config.idempotency_key_reuse == "refuse"
    return await run_idempotent(
        request, request.app[IDEMPOTENCY], handler, on_replay=replayed, refuse_other_body=refuse
    )
