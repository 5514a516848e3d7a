"""``x-idempotency-key`` on writes: required, a UUIDv4; a repeat replays the first answer.

A key is remembered per endpoint and resource (method and path): the same key on the same
endpoint replays, even with another body, as Payrails was seen to do (or, with
``idempotency_key_reuse = "refuse"``, another body is refused with 409 ``request.conflict`` and
nothing is done); the same key on another endpoint or execution is a separate write and never
replays a different resource.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from sandbox.errors import ApiError, conflict

HEADER = "x-idempotency-key"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# (method, path, key): where a key was used, and the key.
Scope = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: bytes
    content_type: str
    request_digest: bytes = b""

    def replay(self) -> web.Response:
        response = web.Response(status=self.status, body=self.body, content_type=self.content_type)
        response.headers["Idempotent-Replayed"] = "true"
        return response


class IdempotencyStore:
    """First answers by scope; one lock per scope so a concurrent repeat waits, then replays."""

    def __init__(self) -> None:
        self._responses: dict[Scope, StoredResponse] = {}
        self._locks: dict[Scope, asyncio.Lock] = {}

    def lock(self, scope: Scope) -> asyncio.Lock:
        return self._locks.setdefault(scope, asyncio.Lock())

    def get(self, scope: Scope) -> StoredResponse | None:
        return self._responses.get(scope)

    def put(self, scope: Scope, response: web.Response, request_digest: bytes = b"") -> None:
        body = response.body if isinstance(response.body, bytes) else b""
        self._responses[scope] = StoredResponse(
            response.status, body, response.content_type or "application/json", request_digest
        )


def parse_key(raw: str | None) -> str:
    """The canonical key; ApiError 400 when missing or not a version-4 UUID."""
    if raw is None or not raw.strip():
        raise ApiError(400, "request.idempotency-key.missing", f"{HEADER} header is required")
    try:
        key = uuid.UUID(raw.strip())
    except ValueError as exc:
        raise ApiError(400, "request.idempotency-key.not-uuid", f"{HEADER} must be a UUID") from exc
    if key.version != 4:
        raise ApiError(400, "request.idempotency-key.not-uuid", f"{HEADER} must be a UUIDv4")
    return str(key)


def body_digest(raw: bytes) -> bytes:
    """A digest of the body's meaning: the same JSON in another spacing or key order matches."""
    try:
        canonical = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    except (UnicodeDecodeError, ValueError):
        canonical = raw
    return hashlib.sha256(canonical).digest()


async def run_idempotent(
    request: web.Request,
    store: IdempotencyStore,
    handler: Handler,
    *,
    on_replay: Callable[[], None],
    refuse_other_body: bool = False,
) -> web.StreamResponse:
    """Run ``handler`` once per key and route; store any answer below 500, replay it on repeats.

    With ``refuse_other_body`` a repeat whose body differs from the first is answered 409 and
    neither replayed nor done.
    """
    scope = (request.method, request.path, parse_key(request.headers.get(HEADER)))
    digest = body_digest(await request.read())
    async with store.lock(scope):
        stored = store.get(scope)
        if stored is not None:
            if refuse_other_body and stored.request_digest != digest:
                raise conflict(f"{HEADER} was already used with another request body")
            on_replay()
            return stored.replay()
        try:
            response = await handler(request)
        except ApiError as exc:
            response = exc.response()
        if isinstance(response, web.Response) and response.status < 500:
            store.put(scope, response, digest)
        return response
