"""The async Payrails client: OAuth, idempotent writes with bounded retries, typed results.

Every write carries the caller's idempotency key, and every retry of it reuses that key, so a
write Payrails did but whose answer we lost is never done twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from multidict import CIMultiDictProxy

from shared import metrics
from shared.backoff import Backoff
from shared.config import PayrailsClientSettings
from shared.errors import InvalidPayload
from shared.money import Money
from shared.payrails.auth import TokenCache
from shared.payrails.errors import (
    PayrailsError,
    PayrailsTransientError,
    error_from_response,
)
from shared.payrails.models import Execution
from shared.payrails.tls import build_ssl_context

log = structlog.get_logger(__name__)

# The long-poll request may take as long as the wait itself; this covers the round trip on top.
LONG_POLL_MARGIN_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 10.0
# The follow-up actions an execution or an action answer may link to.
ACTION_LINKS = ("authorize", "capture", "cancel", "refund")
# workflowConfigOverride.captureMode values (payrails-api-facts 2.2).
CAPTURE_MODES = frozenset({"Instant", "Delayed", "manual"})

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ActionAck:
    """Payrails' acknowledgement (202) of an action (authorize, capture, ...): not its outcome.

    The outcome comes later, by ``executionActionCompleted`` (``details.actionId`` is this
    ``action_id``) or on the execution. ``next_actions`` are the actions the answer links to
    (``capture``, ``cancel``, ``refund`` as ``{method, href}``), allowed when it was sent.
    """

    name: str
    action_id: str
    executed_at: str | None
    execution_url: str | None
    consumer_wait_url: str | None
    next_actions: frozenset[str] = frozenset()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, body: object) -> ActionAck:
        """Parse an action response; raise InvalidPayload without ``actionId``."""
        if not isinstance(body, Mapping) or not isinstance(body.get("actionId"), str):
            raise InvalidPayload("action response has no actionId")
        raw_links = body.get("links")
        links: Mapping[str, Any] = raw_links if isinstance(raw_links, Mapping) else {}
        return cls(
            name=str(body.get("name", "")),
            action_id=body["actionId"],
            executed_at=body.get("executedAt") if isinstance(body.get("executedAt"), str) else None,
            execution_url=_href(links.get("execution")),
            consumer_wait_url=_href(links.get("consumerWait")),
            next_actions=frozenset(
                name for name in ACTION_LINKS if _href(links.get(name)) is not None
            ),
            raw=body,
        )


def _href(link: object) -> str | None:
    if isinstance(link, Mapping):
        link = link.get("href")
    return link if isinstance(link, str) and link else None


@dataclass(frozen=True, slots=True)
class _Call:
    """One logical request; ``endpoint`` is the fixed metric label, never an id."""

    endpoint: str
    method: str
    path: str
    body: Mapping[str, Any] | None = None
    params: Mapping[str, str] | None = None
    idempotency_key: uuid.UUID | None = None
    timeout: float | None = None
    authenticated: bool = True
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: Any
    retry_after: float | None


def parse_retry_after(raw: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header in its delta-seconds form; None if absent or odd."""
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


class PayrailsClient:
    """Payrails' merchant API over one ClientSession; the caller owns the session."""

    def __init__(
        self,
        settings: PayrailsClientSettings,
        session: aiohttp.ClientSession,
        *,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._session = session
        self._base = settings.payrails_base_url.rstrip("/")
        self._workflow = f"/merchant/workflows/{settings.payrails_workflow_code}/executions"
        self._sleep: Sleep = sleep or asyncio.sleep
        self._rng = rng or random.Random()
        self._backoff = Backoff(
            start=settings.payrails_retry_backoff_seconds, cap=MAX_BACKOFF_SECONDS, jitter=0.5
        )
        self._tokens = TokenCache(
            self._fetch_token,
            margin_seconds=settings.payrails_token_refresh_margin_seconds,
            clock=clock,
        )

    async def client_init(
        self, *, holder_reference: str, init_type: str, idempotency_key: uuid.UUID
    ) -> dict[str, Any]:
        """The SDK bootstrap payload ``{version, data}``, verbatim for the storefront."""
        body = {
            "workflowCode": self._settings.payrails_workflow_code,
            "holderReference": holder_reference,
            "workspaceId": self._settings.payrails_workspace_id,
            "type": init_type,
        }
        answer = await self._send(
            _Call("client_init", "POST", "/merchant/client/init", body, None, idempotency_key)
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("data"), str):
            raise InvalidPayload("client init response has no data")
        return answer

    async def create_execution(
        self,
        *,
        merchant_reference: str,
        holder_reference: str,
        meta: Mapping[str, Any],
        idempotency_key: uuid.UUID,
        capture_mode: str | None = None,
        capture_delay: str | None = None,
    ) -> Execution:
        """Create an execution with metadata only (amount and instrument go on authorize).

        ``capture_mode`` (``Instant``, ``Delayed`` with an ISO-8601 ``capture_delay``, or
        ``manual``) overrides the workflow's capture for this execution; None keeps the
        workflow's own (Payrails' default is instant).
        """
        body: dict[str, Any] = {
            "merchantReference": merchant_reference,
            "holderReference": holder_reference,
            "workspaceId": self._settings.payrails_workspace_id,
            "meta": dict(meta),
        }
        if capture_mode is not None:
            if capture_mode not in CAPTURE_MODES:
                raise ValueError(f"capture_mode must be one of {sorted(CAPTURE_MODES)}")
            override = {"captureMode": capture_mode}
            if capture_delay is not None:
                override["captureDelay"] = capture_delay
            body["workflowConfigOverride"] = override
        call = _Call("create_execution", "POST", self._workflow, body, None, idempotency_key)
        return Execution.from_api(await self._send(call))

    async def authorize(
        self,
        execution_id: str,
        *,
        amount: Money,
        payment_instrument_id: str,
        payment_method_code: str,
        return_url: str,
        idempotency_key: uuid.UUID,
    ) -> ActionAck:
        """Ask for the authorization; the outcome arrives by webhook or long-poll."""
        body = {
            "amount": amount.to_json(),
            "returnInfo": {"success": return_url},
            "paymentComposition": [
                {
                    "paymentMethodCode": payment_method_code,
                    "integrationType": "api",
                    "amount": amount.to_json(),
                    "storeInstrument": False,
                    "paymentInstrumentId": payment_instrument_id,
                }
            ],
        }
        return await self._action("authorize", execution_id, body, idempotency_key)

    async def capture(
        self,
        execution_id: str,
        *,
        idempotency_key: uuid.UUID,
        amount: Money | None = None,
        final: bool = True,
    ) -> ActionAck:
        """Capture the rest of the authorized amount, or part of it when ``amount`` is given.

        ``final=False`` leaves the rest capturable by later partial captures; a final capture
        (Payrails' default) releases whatever it leaves uncaptured.
        """
        body: dict[str, Any] = {"final": final}
        if amount is not None:
            body["amount"] = amount.to_json()
        return await self._action("capture", execution_id, body, idempotency_key)

    async def cancel(
        self,
        execution_id: str,
        *,
        idempotency_key: uuid.UUID,
        reason: str = "NoReason",
        reason_description: str | None = None,
    ) -> ActionAck:
        """Void what is not captured and refund what is: the whole rest, never a partial amount.

        Payrails' cancel takes no amount, so none is sent.
        """
        body: dict[str, Any] = {"reason": reason}
        if reason_description is not None:
            body["reasonDescription"] = reason_description
        return await self._action("cancel", execution_id, body, idempotency_key)

    async def refund(
        self,
        execution_id: str,
        *,
        idempotency_key: uuid.UUID,
        amount: Money | None = None,
        reason: str | None = None,
    ) -> ActionAck:
        """Refund the rest of the captured amount, or part of it when ``amount`` is given.

        Several refunds are allowed, up to the captured amount in all.
        """
        body: dict[str, Any] = {}
        if amount is not None:
            body["amount"] = amount.to_json()
        if reason is not None:
            body["reason"] = reason
        return await self._action("refund", execution_id, body, idempotency_key)

    async def get_execution(
        self,
        execution_id: str,
        *,
        wait_while: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> Execution:
        """The execution's state; with ``wait_while``, long-poll until it leaves those statuses.

        The long-poll is best-effort: if it times out or fails, a plain GET answers instead.
        """
        path = f"{self._workflow}/{_segment(execution_id)}"
        if wait_while:
            wait = timeout if timeout is not None else self._settings.payrails_long_poll_seconds
            params = {"waitWhile[status]": json.dumps(list(wait_while))}
            call = _Call("get_execution", "GET", path, None, params, timeout=wait)
            try:
                return Execution.from_api(await self._send(call, max_retries=0))
            except PayrailsTransientError as exc:
                log.info("payrails.long_poll.fallback", status=exc.status, code=exc.code)
        return Execution.from_api(await self._send(_Call("get_execution", "GET", path)))

    async def _action(
        self, name: str, execution_id: str, body: Mapping[str, Any], key: uuid.UUID
    ) -> ActionAck:
        path = f"{self._workflow}/{_segment(execution_id)}/{name}"
        return ActionAck.from_api(await self._send(_Call(name, "POST", path, body, None, key)))

    async def _fetch_token(self) -> tuple[str, float]:
        settings = self._settings
        call = _Call(
            "token",
            "POST",
            f"/auth/token/{_segment(settings.payrails_client_id)}",
            authenticated=False,
            headers={"x-api-key": settings.payrails_client_secret.reveal()},
        )
        body = await self._send(call)
        token = body.get("access_token") if isinstance(body, Mapping) else None
        expires_in = body.get("expires_in") if isinstance(body, Mapping) else None
        if not isinstance(token, str) or not token:
            raise PayrailsError("token response has no access_token", status=200)
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 600.0
        return token, lifetime

    async def _send(self, call: _Call, *, max_retries: int | None = None) -> Any:
        """Send with one re-auth on 401 and bounded, jittered retries of transient failures."""
        limit = self._settings.payrails_max_retries if max_retries is None else max_retries
        attempt = 0
        reauthenticated = False
        while True:
            token = await self._tokens.get() if call.authenticated else None
            try:
                answer = await self._attempt(call, token)
            except PayrailsTransientError as exc:
                failure: PayrailsError = exc
            else:
                if answer.status < 300:
                    return answer.body
                if answer.status == 401 and token is not None and not reauthenticated:
                    reauthenticated = True
                    await self._tokens.replace(token)
                    continue
                failure = error_from_response(
                    call.endpoint, answer.status, answer.body, retry_after=answer.retry_after
                )
                if not failure.retryable:
                    raise failure
            attempt += 1
            delay = self._retry_delay(attempt, failure.retry_after)
            if attempt > limit or delay is None:
                raise failure
            log.warning(
                "payrails.request.retry",
                endpoint=call.endpoint,
                attempt=attempt,
                status=failure.status,
                code=failure.code,
                reason=str(failure),
                delay_seconds=round(delay, 3),
            )
            await self._sleep(delay)

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float | None:
        """The server's Retry-After (None when too long to wait), else jittered backoff."""
        if retry_after is not None:
            cap = self._settings.payrails_retry_after_max_seconds
            return retry_after if retry_after <= cap else None
        return self._backoff.delay(attempt, self._rng)

    async def _attempt(self, call: _Call, token: str | None) -> _Answer:
        headers = {"Accept": "application/json", **call.headers}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if call.idempotency_key is not None:
            headers["x-idempotency-key"] = str(call.idempotency_key)
        total = call.timeout or self._settings.payrails_timeout_seconds
        if call.params is not None:
            total += LONG_POLL_MARGIN_SECONDS
        started = time.perf_counter()
        status = "error"
        try:
            async with self._session.request(
                call.method,
                self._base + call.path,
                json=call.body,
                params=call.params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=total),
            ) as response:
                status = str(response.status)
                raw = await response.read()
                return _Answer(response.status, _decode(raw), _retry_after_of(response.headers))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PayrailsTransientError(
                f"payrails {call.endpoint} failed: {type(exc).__name__}"
            ) from exc
        finally:
            metrics.PAYRAILS_REQUESTS.labels(endpoint=call.endpoint, status=status).inc()
            metrics.PAYRAILS_REQUEST_SECONDS.labels(endpoint=call.endpoint).observe(
                time.perf_counter() - started
            )


def _retry_after_of(headers: CIMultiDictProxy[str]) -> float | None:
    return parse_retry_after(headers.get("Retry-After"))


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None


def _segment(value: str) -> str:
    """One URL path segment: ids are opaque, so refuse anything that would change the path."""
    if not value or "/" in value or value in {".", ".."}:
        raise ValueError(f"{value!r} is not a valid path segment")
    return value


@contextlib.asynccontextmanager
async def open_payrails_client(settings: PayrailsClientSettings) -> AsyncIterator[PayrailsClient]:
    """A PayrailsClient owning its ClientSession (with mTLS when configured)."""
    ssl_context = build_ssl_context(settings)
    connector = aiohttp.TCPConnector(ssl=ssl_context if ssl_context is not None else True)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield PayrailsClient(settings, session)
