"""Webhook delivery: signed POSTs, retried with backoff, with duplicate/delay/drop faults."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog

from sandbox.errors import conflict, not_found
from sandbox.executions import iso
from sandbox.state import SandboxState
from shared.config import WebhookKey

log = structlog.get_logger(__name__)


def sign(body: bytes, key: WebhookKey) -> str:
    """``X-Signature``: base64 of HMAC-SHA256 over the raw body."""
    return base64.b64encode(hmac.new(key.material, body, hashlib.sha256).digest()).decode()


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of a delivery: the receiver's status, or the error that stood in for one."""

    at: datetime
    status: int | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {"at": iso(self.at), "status": self.status, "error": self.error}


@dataclass(slots=True)
class Delivery:
    """One webhook delivery and what became of it."""

    id: str
    event: str
    execution_id: str
    body: bytes = field(repr=False)
    created_at: datetime
    destination: str
    status: str = "pending"  # pending|held|delivered|failed|dropped|disabled
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None
    duplicate_of: str | None = None
    delay_seconds: float = 0.0
    history: list[Attempt] = field(default_factory=list)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def in_flight(self) -> bool:
        """A task is sending or retrying it right now."""
        return self.task is not None and not self.task.done()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event,
            "executionId": self.execution_id,
            "status": self.status,
            "attempts": self.attempts,
            "lastStatus": self.last_status,
            "lastError": self.last_error,
            "history": [attempt.to_json() for attempt in self.history],
            "destination": self.destination,
            "createdAt": iso(self.created_at),
            "deliveredAt": iso(self.delivered_at) if self.delivered_at else None,
            "duplicateOf": self.duplicate_of,
            "delaySeconds": self.delay_seconds,
            "body": json.loads(self.body),
        }


class WebhookDispatcher:
    """Sends every webhook on its own task; ``close`` cancels whatever is still retrying."""

    def __init__(self, state: SandboxState, session: aiohttp.ClientSession) -> None:
        self._state = state
        self._session = session
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self.deliveries: dict[str, Delivery] = {}

    def emit(self, event: str, execution_id: str, payload: dict[str, Any]) -> None:
        """Queue one event, applying the drop / duplicate / hold / delay knobs."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        faults = self._state.faults
        knobs = faults.faults.webhooks
        original = self._record(event, execution_id, body)
        copies = [original]
        if faults.chance(knobs.duplicate_rate):
            duplicate = self._record(event, execution_id, body)
            duplicate.duplicate_of = original.id
            copies.append(duplicate)
        for delivery in copies:
            if faults.chance(knobs.drop_rate):
                self._set_status(delivery, "dropped")
                log.info("sandbox.webhook.dropped", delivery_id=delivery.id, webhook_event=event)
                continue
            if faults.chance(knobs.hold_rate):
                self._set_status(delivery, "held")
                log.info("sandbox.webhook.held", delivery_id=delivery.id, webhook_event=event)
                continue
            if faults.chance(knobs.delay_rate):
                low = min(knobs.delay_min_seconds, knobs.delay_max_seconds)
                delay = faults.uniform(low, knobs.delay_max_seconds)
                delivery.delay_seconds = round(delay, 3)
            self._start(delivery)

    def resend(self, delivery_id: str) -> Delivery:
        """Send a delivery again, to the current webhook URL, with a fresh retry schedule."""
        delivery = self.get(delivery_id)
        if delivery.in_flight:
            raise conflict("the delivery is still being sent; resend it once it settled")
        delivery.destination = self._state.config.webhook_url
        delivery.delay_seconds = 0.0
        self._set_status(delivery, "pending")
        self._start(delivery)
        return delivery

    def release(self, delivery_id: str) -> Delivery:
        """Send a held delivery now (the hold knob keeps it until a test says so)."""
        delivery = self.get(delivery_id)
        if delivery.status != "held":
            raise conflict(f"the delivery is {delivery.status}, not held")
        self._set_status(delivery, "pending")
        self._start(delivery)
        return delivery

    async def wait_for(
        self, delivery_id: str, statuses: frozenset[str], timeout: float
    ) -> Delivery:
        """The delivery once its status is one of ``statuses``, or as it is after ``timeout``."""
        delivery = self.get(delivery_id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while delivery.status not in statuses:
                    await self._changed.wait()
        return delivery

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def get(self, delivery_id: str) -> Delivery:
        delivery = self.deliveries.get(delivery_id)
        if delivery is None:
            raise not_found("delivery")
        return delivery

    def _set_status(self, delivery: Delivery, status: str) -> None:
        delivery.status = status
        self._notify()

    def _notify(self) -> None:
        """Wake every ``wait_for``; each waits on a fresh event afterwards."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _record(self, event: str, execution_id: str, body: bytes) -> Delivery:
        delivery = Delivery(
            id=str(uuid.uuid4()),
            event=event,
            execution_id=execution_id,
            body=body,
            created_at=datetime.now(UTC),
            destination=self._state.config.webhook_url,
        )
        self.deliveries[delivery.id] = delivery
        return delivery

    def _start(self, delivery: Delivery) -> None:
        if not delivery.destination:
            self._set_status(delivery, "disabled")
            return
        task = asyncio.create_task(self._deliver(delivery), name=f"webhook-{delivery.id}")
        delivery.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, delivery: Delivery) -> None:
        if delivery.delay_seconds:
            await asyncio.sleep(delivery.delay_seconds)
        schedule = self._state.config.webhook_retry_schedule_seconds
        for attempt in range(len(schedule) + 1):
            if await self._attempt(delivery):
                delivery.delivered_at = datetime.now(UTC)
                self._set_status(delivery, "delivered")
                return
            if attempt < len(schedule):
                await asyncio.sleep(schedule[attempt])
        self._set_status(delivery, "failed")
        log.warning("sandbox.webhook.failed", delivery_id=delivery.id, attempts=delivery.attempts)

    async def _attempt(self, delivery: Delivery) -> bool:
        config = self._state.config
        delivery.attempts += 1
        headers = {
            "Content-Type": "application/json",
            "X-Signature": sign(delivery.body, config.webhook_keys[0]),
        }
        try:
            async with self._session.post(
                delivery.destination,
                data=delivery.body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=config.webhook_timeout_seconds),
            ) as response:
                await response.read()
                delivery.last_status = response.status
                delivery.last_error = None
                ok = 200 <= response.status < 300
        except (aiohttp.ClientError, TimeoutError) as exc:
            delivery.last_status = None
            delivery.last_error = type(exc).__name__
            ok = False
        attempt = Attempt(datetime.now(UTC), delivery.last_status, delivery.last_error)
        delivery.history.append(attempt)
        self._notify()
        log.info(
            "sandbox.webhook.attempt",
            delivery_id=delivery.id,
            webhook_event=delivery.event,
            attempt=delivery.attempts,
            http_status=delivery.last_status,
            error=delivery.last_error,
        )
        return ok
