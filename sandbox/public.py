"""Shopper-facing endpoints: card tokenization, the hosted 3-D Secure page, consumer wait."""

from __future__ import annotations

import html
import uuid
from datetime import UTC, datetime

from aiohttp import web

from sandbox.cards import Instrument, behaviour_of, check_card
from sandbox.errors import ApiError, not_found
from sandbox.executions import SandboxExecution
from sandbox.keys import ENGINE, STATE
from sandbox.render import challenge_url
from sandbox.requests import read_object

TOKENIZE_PATH = "/public/secure-fields/tokenize"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, x-idempotency-key",
    "Access-Control-Max-Age": "600",
}


async def tokenize(request: web.Request) -> web.Response:
    """Card data -> a paymentInstrumentId; only the card's behaviour and display digits are kept."""
    state = request.app[STATE]
    body = await read_object(request)
    session = state.sdk_session(str(body.get("sdkToken", "")))
    if session is None:
        raise ApiError(401, "request.unauthorized", "sdkToken is missing, unknown or expired")
    digits = check_card(
        body.get("cardNumber"),
        body.get("expiryMonth"),
        body.get("expiryYear"),
        body.get("securityCode"),
        datetime.now(UTC).date(),
    )
    instrument = Instrument(
        id=str(uuid.uuid4()),
        behaviour=behaviour_of(digits),
        bin=digits[:6],
        last4=digits[-4:],
        holder_reference=session.holder_reference,
    )
    state.instruments[instrument.id] = instrument
    state.stats.instruments_tokenized += 1
    return web.json_response(
        {
            "id": instrument.id,
            "paymentInstrumentId": instrument.id,
            "paymentMethodCode": "card",
            "bin": instrument.bin,
            "last4": instrument.last4,
            "holderReference": instrument.holder_reference,
        },
        status=201,
    )


async def tokenize_preflight(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def add_cors(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: CORS on every tokenize answer, errors included."""
    if request.path == TOKENIZE_PATH:
        response.headers.update(CORS_HEADERS)


def _execution(request: web.Request) -> SandboxExecution:
    execution = request.app[STATE].executions.get(request.match_info["execution_id"])
    if execution is None:
        raise not_found("execution")
    return execution


async def threeds_page(request: web.Request) -> web.Response:
    """The issuer's challenge page: Complete approves, Fail fails the authentication."""
    execution = _execution(request)
    auth = execution.authorization
    if not execution.challenge_pending or auth is None:
        return _page("No challenge pending", "<p>There is no challenge to complete.</p>")
    amount = html.escape(f"{auth.amount.format_value()} {auth.amount.currency}")
    action = html.escape(request.path)
    content = (
        f"<p>Confirm the payment of <strong>{amount}</strong> "
        f"to <strong>{html.escape(execution.merchant_reference)}</strong>.</p>"
        f'<form method="post" action="{action}">'
        '<button type="submit" name="outcome" value="complete" id="complete">Complete</button>'
        '<button type="submit" name="outcome" value="fail" id="fail">Fail</button>'
        "</form>"
    )
    return _page("3-D Secure challenge", content)


async def threeds_submit(request: web.Request) -> web.Response:
    """Resolve the challenge, then send the shopper to ``returnInfo.success``."""
    execution = _execution(request)
    form = await request.post()
    outcome = form.get("outcome")
    if outcome not in ("complete", "fail"):
        raise ApiError(400, "request.validation-error", "outcome must be complete or fail")
    request.app[ENGINE].resolve_challenge(execution, completed=outcome == "complete")
    auth = execution.authorization
    if auth is None:
        raise not_found("authorization")
    raise web.HTTPSeeOther(auth.return_success)


async def consumer_wait(request: web.Request) -> web.Response:
    """Payrails' intermediate page: to the challenge if one is pending, else back to the shop."""
    execution = _execution(request)
    auth = execution.authorization
    if execution.challenge_pending:
        raise web.HTTPFound(challenge_url(str(request.url.origin()), execution.id))
    if auth is not None:
        raise web.HTTPFound(auth.return_success)
    return _page("Nothing to wait for", "<p>This execution has no action in progress.</p>")


def _page(title: str, content: str) -> web.Response:
    text = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{content}</body></html>"
    )
    return web.Response(text=text, content_type="text/html")
