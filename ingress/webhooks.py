"""POST /webhooks/payrails: verify, then store durably in RabbitMQ before answering 200.

Answers: 200 once the broker confirmed; 413 too large; 408 body not sent within
HTTP_BODY_TIMEOUT_SECONDS; 401 bad or missing signature; 400 signed but not a Payrails event;
503 (with Retry-After) when the broker did not confirm, so Payrails retries. Every request ends
in exactly one ``webhook.handled`` log line.

The message id is the event id: the body's ``id`` when it has one, else ``drv_`` + a hash of
(event, details.actionId, details.success, time, execution id), so a retried delivery keeps its
id (the full rule is in ``shared.events``). Dedupe is the worker's job; the ingress enqueues
every correctly signed delivery.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader
from prometheus_client import Counter, Histogram

from ingress.amqp_wire import HeaderValue
from ingress.keys import BROKER, WEBHOOK_SETTINGS
from ingress.signature import SIGNATURE_HEADER, SignatureFault, SignatureRejected, verify_signature
from shared import metrics
from shared.clock import UtcIsoClock
from shared.config import WebhookIngressSettings
from shared.errors import InvalidPayload, PublishError
from shared.events import EventIdentity, identify
from shared.http_server import BodyTimeout, body_deadline
from shared.messaging import (
    HDR_EVENT_ID,
    HDR_EVENT_NAME,
    HDR_KEY_INDEX,
    HDR_RECEIVED_AT,
)
from shared.request_logging import LINE, RequestLogging

RETRY_AFTER_SECONDS = "5"
MAX_SHORTSTR_BYTES = 255  # AMQP routing keys and message ids are short strings
ACCEPTED_BODY = b'{"status":"accepted"}'
_RECEIVED_AT = UtcIsoClock(3, "+00:00")  # as datetime.now(UTC).isoformat(timespec="milliseconds")

_PAYLOAD_REASONS = {
    "body is not valid JSON": "payload_not_json",
    "body is not a JSON object": "payload_not_object",
    "body has no string 'event' field": "payload_no_event",
    "body holds a lone surrogate, which is not text": "payload_not_text",
}


class BodyTooLarge(Exception):
    """The body exceeds WEBHOOK_MAX_BODY_BYTES."""


async def read_capped(request: web.Request, limit: int) -> bytes:
    """The whole body, refusing early (by Content-Length) or as soon as it passes ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge
    content: StreamReader = request.content
    chunks: list[bytes] = []
    size = 0
    while chunk := await content.readany():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_event(body: bytes) -> EventIdentity:
    """The event, or InvalidPayload when it cannot be routed and identified on AMQP."""
    try:
        event = identify(body)
    except RecursionError as exc:
        raise InvalidPayload("body is nested too deeply") from exc
    if len(event.name.encode()) > MAX_SHORTSTR_BYTES:
        raise InvalidPayload("event name is longer than 255 bytes")
    if len(event.event_id.encode()) > MAX_SHORTSTR_BYTES:
        raise InvalidPayload("event id is longer than 255 bytes")
    return event


class Refusal(Exception):
    """A delivery answered with a 4xx: the status, outcome label and precise reason."""

    def __init__(self, status: int, outcome: str, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.status, self.outcome, self.reason, self.detail = status, outcome, reason, detail


async def _read(request: web.Request, settings: WebhookIngressSettings) -> bytes:
    try:
        async with body_deadline(request, settings.http_body_timeout_seconds):
            return await read_capped(request, settings.webhook_max_body_bytes)
    except BodyTimeout as exc:  # counted and logged; the connection closes after the 408
        raise Refusal(408, "timeout", "body_timeout") from exc
    except BodyTooLarge as exc:
        raise Refusal(413, "too_large", "body_too_large") from exc
    except (HttpProcessingError, web.RequestPayloadError, ConnectionError) as exc:
        raise Refusal(400, "bad_payload", "body_unreadable") from exc


def _verify(request: web.Request, body: bytes, settings: WebhookIngressSettings) -> int:
    try:
        key_index = verify_signature(
            body, request.headers.get(SIGNATURE_HEADER), settings.payrails_webhook_keys
        )
    except SignatureRejected as exc:
        outcome = "missing_signature" if exc.fault is SignatureFault.MISSING else "bad_signature"
        raise Refusal(401, outcome, exc.fault.value) from exc
    return key_index


def _parse(body: bytes) -> EventIdentity:
    try:
        return parse_event(body)
    except InvalidPayload as exc:
        reason = _PAYLOAD_REASONS.get(str(exc), "payload_invalid")
        raise Refusal(400, "bad_payload", reason, detail=str(exc)) from exc


def _refuse(refusal: Refusal, line: dict[str, Any]) -> web.Response:
    line.update(outcome=refusal.outcome, reason=refusal.reason)
    metrics.WEBHOOK_REJECTIONS.labels(refusal.reason).inc()
    body = {"error": refusal.outcome, "reason": refusal.reason}
    if refusal.detail is not None:
        body["detail"] = refusal.detail
    response = web.json_response(body, status=refusal.status)
    if refusal.status in (408, 413):
        response.force_close()  # the rest of the body is never read
    return response


async def _answer(request: web.Request, app: web.Application, line: dict[str, Any]) -> web.Response:
    settings = app[WEBHOOK_SETTINGS]
    try:
        body = await _read(request, settings)
        line["key_index"] = key_index = _verify(request, body, settings)
        name, event_id, execution_id = _parse(body)
    except Refusal as refusal:
        return _refuse(refusal, line)
    line.update(webhook_event=name, event_id=event_id, execution_id=execution_id)
    broker = app[BROKER]
    headers: dict[str, HeaderValue] = {
        HDR_EVENT_NAME: name,
        HDR_EVENT_ID: event_id,
        HDR_RECEIVED_AT: _RECEIVED_AT.now(),
        HDR_KEY_INDEX: key_index,
    }
    try:  # the raw body, routed by event name; returns once the broker confirmed it
        await broker.publish(
            broker.names.webhooks_exchange, name, body, message_id=event_id, headers=headers
        )
    except PublishError as exc:
        line.update(outcome="unavailable", reason=exc.reason)
        return web.json_response(
            {"error": "unavailable", "reason": exc.reason},
            status=503,
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    line["outcome"] = "accepted"
    return web.Response(body=ACCEPTED_BODY, content_type="application/json")


async def receive_webhook(request: web.Request) -> web.Response:
    """The POST /webhooks/payrails handler; the request-logging middleware logs and counts it."""
    return await _answer(request, request.app, request[LINE])


def internal_error() -> web.Response:
    """A bug of ours: Payrails must retry, not be told 500 or 4xx."""
    return web.json_response(
        {"error": "internal_error"}, status=503, headers={"Retry-After": RETRY_AFTER_SECONDS}
    )


@cache
def _request_metrics(outcome: str) -> tuple[Counter, Histogram]:
    """The labelled children for one outcome, looked up once."""
    return metrics.WEBHOOK_REQUESTS.labels(outcome), metrics.WEBHOOK_REQUEST_SECONDS.labels(outcome)


def count(_endpoint: str, outcome: str, seconds: float, line: Mapping[str, Any]) -> None:
    """The webhook metrics of one request: by outcome, and which signing key matched."""
    requests, durations = _request_metrics(outcome)
    requests.inc()
    durations.observe(seconds)
    key_index = line.get("key_index")
    if key_index is not None:
        _key_matches(key_index).inc()


@cache
def _key_matches(key_index: int) -> Counter:
    return metrics.WEBHOOK_SIGNATURE_KEY_MATCHES.labels(str(key_index))


REQUEST_LOGGING = RequestLogging(
    logger="ingress.webhooks",
    event="webhook.handled",
    endpoints=frozenset({"webhook"}),
    count=count,
    internal_error=internal_error,
)
