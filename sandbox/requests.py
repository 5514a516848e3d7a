"""Small request helpers shared by the sandbox's handlers."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from sandbox.errors import invalid
from sandbox.keys import STATE


async def read_object(request: web.Request) -> dict[str, Any]:
    """The JSON object body (empty body -> {}); ApiError 400 otherwise."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise invalid("body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise invalid("body must be a JSON object")
    return data


def base_url(request: web.Request) -> str:
    """The sandbox's address as links should carry it: SANDBOX_PUBLIC_URL, else this request's."""
    configured = request.app[STATE].config.public_url
    return configured.rstrip("/") if configured else str(request.url.origin())
