"""The control API under ``/_sandbox/``: deliveries, faults, stats, config, token expiry."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from sandbox import ledger
from sandbox.capture import parse_mode
from sandbox.config import KEY_REUSES, STATUS_SHAPES
from sandbox.errors import invalid, not_found
from sandbox.faults import Faults, KnobError
from sandbox.keys import STATE, WEBHOOKS
from sandbox.requests import read_object

MAX_DELIVERY_WAIT_SECONDS = 30.0


async def list_deliveries(request: web.Request) -> web.Response:
    """Every delivery in creation order; ``?event=`` and ``?executionId=`` filter."""
    event = request.query.get("event")
    execution_id = request.query.get("executionId")
    items = [
        d.to_json()
        for d in request.app[WEBHOOKS].deliveries.values()
        if (event is None or d.event == event)
        and (execution_id is None or d.execution_id == execution_id)
    ]
    return web.json_response({"deliveries": items})


async def get_delivery(request: web.Request) -> web.Response:
    """One delivery; ``?waitFor=delivered,failed&timeout=5`` holds the answer until it gets there.

    The answer is the delivery as it is when a status matched or the timeout ran out (at most
    ``MAX_DELIVERY_WAIT_SECONDS``), so the caller checks ``status`` itself.
    """
    webhooks = request.app[WEBHOOKS]
    delivery_id = request.match_info["delivery_id"]
    wanted = frozenset(s.strip() for s in request.query.get("waitFor", "").split(",") if s.strip())
    if not wanted:
        return web.json_response(webhooks.get(delivery_id).to_json())
    timeout = _wait_seconds(request.query.get("timeout", "5"))
    delivery = await webhooks.wait_for(delivery_id, wanted, timeout)
    return web.json_response(delivery.to_json())


async def resend_delivery(request: web.Request) -> web.Response:
    """Send it again; 409 while the delivery is still being sent or retried."""
    delivery = request.app[WEBHOOKS].resend(request.match_info["delivery_id"])
    return web.json_response(delivery.to_json(), status=202)


async def release_delivery(request: web.Request) -> web.Response:
    """Send a delivery the hold knob is keeping; 409 unless it is held."""
    delivery = request.app[WEBHOOKS].release(request.match_info["delivery_id"])
    return web.json_response(delivery.to_json(), status=202)


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].faults.faults.to_json())


async def put_faults(request: web.Request) -> web.Response:
    """Replace every fault knob (an empty object clears them all)."""
    try:
        faults = Faults.from_json(await read_object(request))
    except ValueError as exc:
        raise invalid(str(exc)) from exc
    request.app[STATE].faults.replace(faults)
    return web.json_response(faults.to_json())


async def get_stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    stats = state.stats.to_json()
    stats["webhookDeliveries"] = len(request.app[WEBHOOKS].deliveries)
    return web.json_response(stats)


async def get_config(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].config.to_json())


async def put_config(request: web.Request) -> web.Response:
    """Change the runtime knobs given (camelCase or snake_case); the rest stay as they are."""
    state = request.app[STATE]
    changes = _config_changes(await read_object(request))
    state.config = dataclasses.replace(state.config, **changes)
    return web.json_response(state.config.to_json())


async def get_execution(request: web.Request) -> web.Response:
    """One execution's money picture: authorized, captured, refunded, voided, each operation."""
    execution = request.app[STATE].executions.get(request.match_info["execution_id"])
    if execution is None:
        raise not_found("execution")
    return web.json_response(ledger.picture(execution))


async def health(request: web.Request) -> web.Response:
    """Liveness for compose and Kubernetes probes."""
    return web.json_response({"status": "ok"})


async def expire_tokens(request: web.Request) -> web.Response:
    """Invalidate every OAuth token, so the next merchant call gets a 401."""
    return web.json_response({"expired": request.app[STATE].expire_tokens()})


def _wait_seconds(raw: str) -> float:
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < math.inf:
        raise invalid("timeout must be a non-negative number of seconds")
    return min(seconds, MAX_DELIVERY_WAIT_SECONDS)


def _non_negative(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise KnobError("must be a non-negative number")
    return float(value)


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise KnobError("must be true or false")
    return value


def _url(value: object) -> str:
    if not isinstance(value, str):
        raise KnobError("must be a string ('' disables)")
    return value.strip()


def _optional_url(value: object) -> str | None:
    return _url(value) or None if value is not None else None


def _shape(value: object) -> str:
    if value not in STATUS_SHAPES:
        raise KnobError(f"must be one of {', '.join(STATUS_SHAPES)}")
    return str(value)


def _capture_mode(value: object) -> str:
    return parse_mode(value)


def _key_reuse(value: object) -> str:
    if value not in KEY_REUSES:
        raise KnobError(f"must be one of {', '.join(KEY_REUSES)}")
    return str(value)


def _schedule(value: object) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise KnobError("must be a list of seconds")
    return tuple(_non_negative(v) for v in value)


def _ttl(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise KnobError("must be a positive integer")
    return value


_PARSERS: Mapping[str, Callable[[object], Any]] = {
    "webhook_url": _url,
    "public_url": _optional_url,
    "status_shape": _shape,
    "pending_webhooks": _flag,
    "trailing_pending_after_decline": _flag,
    "token_ttl_seconds": _ttl,
    "max_wait_seconds": _non_negative,
    "action_delay_seconds": _non_negative,
    "challenge_expiry_seconds": _non_negative,
    "webhook_timeout_seconds": _non_negative,
    "webhook_retry_schedule_seconds": _schedule,
    "capture_mode": _capture_mode,
    "capture_delay_seconds": _non_negative,
    "idempotency_key_reuse": _key_reuse,
}
_ALIASES = {
    "".join([p if i == 0 else p.title() for i, p in enumerate(name.split("_"))]): name
    for name in _PARSERS
}


def _config_changes(body: Mapping[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for key, value in body.items():
        name = _ALIASES.get(key, key)
        parser = _PARSERS.get(name)
        if parser is None:
            raise invalid(f"{key} cannot be changed at runtime")
        try:
            changes[name] = parser(value)
        except ValueError as exc:
            raise invalid(f"{key} {exc}") from exc
    return changes
