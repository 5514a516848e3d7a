"""Reading checkout request bodies, and the 422 answer for invalid fields."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ingress.checkout.service import CheckoutError
from ingress.keys import SETTINGS
from shared.http_server import BodyTimeout, read_body
from shared.request_logging import set_outcome
from shared.validation import FieldError


class BodyTooSlow(CheckoutError, status=408, code="body_timeout", title="Request Timeout"):
    """The body did not arrive within HTTP_BODY_TIMEOUT_SECONDS."""


class InvalidJson(CheckoutError, status=400, code="invalid_json", title="Invalid JSON"):
    """The body is not JSON at all."""


async def json_body(request: web.Request) -> Any:
    """The decoded JSON body; None when the body is empty (the seed's bare POST).

    A body that trickles in slower than HTTP_BODY_TIMEOUT_SECONDS is cut off with 408.
    """
    try:
        raw = await read_body(request, request.app[SETTINGS].http_body_timeout_seconds)
    except BodyTimeout as exc:
        raise BodyTooSlow("the request body did not arrive in time") from exc
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJson("the body must be a JSON object") from exc


def invalid(request: web.Request, errors: list[FieldError]) -> web.Response:
    """422 problem+json with one entry per field problem."""
    set_outcome(request, "invalid")
    body = {
        "type": "about:blank",
        "title": "Validation failed",
        "status": 422,
        "detail": "the request has invalid fields",
        "error": "validation_failed",
        "message": "the request has invalid fields",
        "errors": [e.to_json() for e in errors],
    }
    return web.json_response(body, status=422, content_type="application/problem+json")
