"""The merchant API: OAuth token, client init, and workflow executions."""

from __future__ import annotations

import base64
import hmac
import json
from typing import Any

from aiohttp import web

from sandbox.errors import ApiError, invalid
from sandbox.keys import ENGINE, STATE
from sandbox.render import render_execution
from sandbox.requests import base_url, read_object

SDK_VERSION = "sandbox-1.0.0"
INIT_TYPES = frozenset({"dropIn", "secureFields", "tokenization"})


async def issue_token(request: web.Request) -> web.Response:
    """``POST /auth/token/{clientId}`` with the secret in ``x-api-key``."""
    state = request.app[STATE]
    config = state.config
    given = request.headers.get("x-api-key", "").encode()
    known = hmac.compare_digest(given, config.client_secret.reveal().encode())
    if request.match_info["client_id"] != config.client_id or not known:
        return web.json_response(
            {"error": "invalid_client", "error_description": "unknown client or wrong secret"},
            status=401,
        )
    body = {
        "access_token": state.issue_token(),
        "token_type": "Bearer",
        "expires_in": config.token_ttl_seconds,
    }
    return web.json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


async def client_init(request: web.Request) -> web.Response:
    """``POST /merchant/client/init``: the SDK bootstrap, ``data`` being base64 JSON."""
    state = request.app[STATE]
    body = await read_object(request)
    holder = body.get("holderReference")
    init_type = body.get("type", "secureFields")
    if not isinstance(holder, str) or not holder:
        raise invalid("holderReference is required")
    if init_type not in INIT_TYPES:
        raise invalid(f"type must be one of {', '.join(sorted(INIT_TYPES))}")
    if body.get("workspaceId") != state.config.workspace_id:
        raise ApiError(401, "request.unauthorized", "workspaceId is required for this client")
    base = base_url(request)
    data = _init_data(request, holder, str(init_type), base)
    if init_type == "dropIn":
        data.update(_drop_in_execution(request, body, base))
    encoded = base64.b64encode(json.dumps(data).encode()).decode()
    return web.json_response({"version": SDK_VERSION, "data": encoded})


def _init_data(request: web.Request, holder: str, init_type: str, base: str) -> dict[str, Any]:
    state = request.app[STATE]
    tokenize = f"{base}/public/secure-fields/tokenize"
    return {
        "token": state.open_sdk_session(holder),
        "holderReference": holder,
        "type": init_type,
        "vaultConfiguration": {
            "providerId": "sandbox-vault",
            "providerConfigId": "sandbox-vault-config",
            "links": {"tokenize": {"method": "POST", "href": tokenize}},
        },
        "links": {
            "tokenize": {"method": "POST", "href": tokenize},
            "sdk": f"{base}/public/sdk/payrails-sdk.js",
        },
    }


def _drop_in_execution(request: web.Request, body: dict[str, Any], base: str) -> dict[str, Any]:
    """Drop-in init also creates the execution, as Payrails does."""
    state = request.app[STATE]
    workflow = body.get("workflowCode")
    if not isinstance(workflow, str) or not workflow or "amount" not in body:
        raise invalid("dropIn needs workflowCode, merchantReference and amount")
    execution = request.app[ENGINE].create(workflow, body)
    rendered = render_execution(
        execution, base=base, shape=state.config.status_shape, rng=state.rng
    )
    return {"execution": rendered, "amount": body["amount"]}


async def create_execution(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await read_object(request)
    execution = request.app[ENGINE].create(request.match_info["workflow"], body)
    rendered = render_execution(
        execution, base=base_url(request), shape=state.config.status_shape, rng=state.rng
    )
    return web.json_response(rendered, status=201)


async def get_execution(request: web.Request) -> web.Response:
    """``GET`` one execution; ``waitWhile[status]`` long-polls until the latest status differs."""
    state = request.app[STATE]
    engine = request.app[ENGINE]
    execution = engine.get(request.match_info["workflow"], request.match_info["execution_id"])
    wait_while = parse_wait_while(request.query.getall("waitWhile[status]", []))
    if wait_while:
        await execution.wait_while(wait_while, state.config.max_wait_seconds)
    rendered = render_execution(
        execution, base=base_url(request), shape=state.config.status_shape, rng=state.rng
    )
    return web.json_response(rendered)


def parse_wait_while(values: list[str]) -> frozenset[str]:
    """A JSON array of codes, or plain codes (repeated or comma-separated)."""
    codes: set[str] = set()
    for value in values:
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        if isinstance(parsed, list):
            codes.update(str(item) for item in parsed)
        else:
            codes.update(part.strip() for part in str(parsed).split(",") if part.strip())
    return frozenset(codes)


async def authorize(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    execution = engine.get(request.match_info["workflow"], request.match_info["execution_id"])
    body = await read_object(request)
    ack = engine.authorize(execution, body, base_url(request))
    return web.json_response(ack, status=202)


async def follow_up_action(request: web.Request) -> web.Response:
    """Capture, cancel or refund, by the route's name."""
    engine = request.app[ENGINE]
    execution = engine.get(request.match_info["workflow"], request.match_info["execution_id"])
    body = await read_object(request)
    action = request.match_info.route.name or ""
    ack = engine.act(execution, action, body, base_url(request))
    return web.json_response(ack, status=202)
