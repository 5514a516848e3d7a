"""Webhook delivery: signed POSTs, retried with backoff, with duplicate/delay/drop faults."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog

from sandbox.executions import iso
from sandbox.state import SandboxState
from shared.config import WebhookKey

log = structlog.get_logger(__name__)


def sign(body: bytes, key: WebhookKey) -> str:
    """``X-Signature``: base64 of HMAC-SHA256 over the raw body."""
    return base64.b64encode(hmac.new(key.material, body, hashlib.sha256).digest()).decode()


@dataclass(slots=True)
class Delivery:
    """One webhook delivery and what became of it."""

    id: str
    event: str
    execution_id: str
    body: bytes = field(repr=False)
    created_at: datetime
    destination: str
    status: str = "pending"  # pending|delivered|failed|dropped|disabled
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None
    duplicate_of: str | None = None
    delay_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event,
            "executionId": self.execution_id,
            "status": self.status,
            "attempts": self.attempts,
            "lastStatus": self.last_status,
            "lastError": self.last_error,
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
        self.deliveries: dict[str, Delivery] = {}

    def emit(self, event: str, execution_id: str, payload: dict[str, Any]) -> None:
        """Queue one event, applying the drop / duplicate / delay knobs."""
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
                delivery.status = "dropped"
                log.info("sandbox.webhook.dropped", delivery_id=delivery.id, webhook_event=event)
                continue
            if faults.chance(knobs.delay_rate):
                low = min(knobs.delay_min_seconds, knobs.delay_max_seconds)
                delay = faults.uniform(low, knobs.delay_max_seconds)
                delivery.delay_seconds = round(delay, 3)
            self._start(delivery)

    def resend(self, delivery_id: str) -> Delivery | None:
        """Send a delivery again, to the current webhook URL, with a fresh retry schedule."""
        delivery = self.deliveries.get(delivery_id)
        if delivery is None:
            return None
        delivery.destination = self._state.config.webhook_url
        delivery.delay_seconds = 0.0
        delivery.status = "pending"
        self._start(delivery)
        return delivery

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

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
            delivery.status = "disabled"
            return
        task = asyncio.create_task(self._deliver(delivery), name=f"webhook-{delivery.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, delivery: Delivery) -> None:
        if delivery.delay_seconds:
            await asyncio.sleep(delivery.delay_seconds)
        schedule = self._state.config.webhook_retry_schedule_seconds
        for attempt in range(len(schedule) + 1):
            if await self._attempt(delivery):
                delivery.status = "delivered"
                delivery.delivered_at = datetime.now(UTC)
                return
            if attempt < len(schedule):
                await asyncio.sleep(schedule[attempt])
        delivery.status = "failed"
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
        log.info(
            "sandbox.webhook.attempt",
            delivery_id=delivery.id,
            webhook_event=delivery.event,
            attempt=delivery.attempts,
            http_status=delivery.last_status,
            error=delivery.last_error,
        )
        return ok
