"""Load drivers: shoppers through the checkout API, and Payrails-style signed webhook deliveries."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from shared.events import derive_event_id

CARDS = {
    "approve": "4242424242424242",
    "challenge": "4000000000003220",
    "decline": "4000000000009995",
    "cascade": "4000002760003184",
    "unknown": "4000000000000119",
}
WEBHOOK_PATH = "/webhooks/payrails"


def sign(key: bytes, body: bytes) -> str:
    """Payrails' X-Signature: base64(HMAC-SHA256(key, raw body))."""
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


# ---------------------------------------------------------------- webhook deliveries


@dataclass
class Delivery:
    """One signed notification, and what the ingress answered to each attempt."""

    event_id: str
    body: bytes
    signature: str
    statuses: list[int] = field(default_factory=list)
    accepted_at: float | None = None  # monotonic time of the first 200

    @property
    def accepted(self) -> bool:
        return self.accepted_at is not None


def notification(
    execution_id: str,
    merchant_reference: str,
    *,
    event: str = "executionActionCompleted",
    success: bool = True,
    when: datetime | None = None,
) -> dict[str, Any]:
    """An ``executionActionCompleted``-shaped body about an execution that exists."""
    moment = when or datetime.now(UTC)
    return {
        "event": event,
        "time": moment.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "workspaceId": "e2e-workspace",
        "eventTrigger": "action",
        "details": {
            "action": "authorize",
            "actionId": str(uuid.uuid4()),
            "success": success,
            "execution": {
                "id": execution_id,
                "merchantReference": merchant_reference,
                "holderReference": "e2e-customer",
                "workflowCode": "payment-acceptance",
                "meta": {},
            },
            "amount": {"value": "10.00", "currency": "EUR"},
        },
    }


def make_delivery(key: bytes, payload: dict[str, Any]) -> Delivery:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Delivery(derive_event_id(payload), body, sign(key, body))


def deliveries_for(key: bytes, targets: Sequence[tuple[str, str]], count: int) -> list[Delivery]:
    """``count`` distinct notifications spread round-robin over (execution id, reference)."""
    return [make_delivery(key, notification(*targets[i % len(targets)])) for i in range(count)]


@dataclass
class LoadResult:
    sent: int = 0
    started: float = 0.0
    finished: float = 0.0
    by_status: dict[int, int] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


async def post_delivery(
    session: aiohttp.ClientSession, url: str, delivery: Delivery, timeout: float = 10.0
) -> int:
    """POST one delivery; 0 stands for no HTTP answer at all (reset, timeout)."""
    headers = {"Content-Type": "application/json", "X-Signature": delivery.signature}
    try:
        async with session.post(
            url, data=delivery.body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError):
        status = 0
    delivery.statuses.append(status)
    if status == 200 and delivery.accepted_at is None:
        delivery.accepted_at = time.monotonic()
    return status


async def steady_load(
    urls: Sequence[str],
    deliveries: Sequence[Delivery],
    *,
    rate: float,
    max_seconds: float,
    concurrency: int = 256,
) -> LoadResult:
    """Send at ``rate`` per second, round-robin over ``urls``; bounded in count and time."""
    result = LoadResult(started=time.monotonic())
    limit = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    tasks: list[asyncio.Task[int]] = []

    async def one(session: aiohttp.ClientSession, url: str, delivery: Delivery) -> int:
        async with limit:
            return await post_delivery(session, url, delivery)

    async with aiohttp.ClientSession(connector=connector) as session:
        for index, delivery in enumerate(deliveries):
            due = result.started + index / rate
            if due - result.started > max_seconds:
                break
            if (pause := due - time.monotonic()) > 0:
                await asyncio.sleep(pause)
            url = urls[index % len(urls)] + WEBHOOK_PATH
            tasks.append(asyncio.create_task(one(session, url, delivery)))
            result.sent += 1
        statuses = await asyncio.gather(*tasks)
    result.finished = time.monotonic()
    for status in statuses:
        result.by_status[status] = result.by_status.get(status, 0) + 1
    return result


async def redeliver_until_accepted(
    urls: Sequence[str], deliveries: Iterable[Delivery], *, max_seconds: float
) -> list[Delivery]:
    """Payrails' retries: resend every delivery not yet answered 200, with backoff; bounded."""
    pending = [d for d in deliveries if not d.accepted]
    deadline = time.monotonic() + max_seconds
    pause = 0.5
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        while pending and time.monotonic() < deadline:
            await asyncio.gather(
                *(
                    post_delivery(session, urls[i % len(urls)] + WEBHOOK_PATH, d)
                    for i, d in enumerate(pending)
                )
            )
            pending = [d for d in pending if not d.accepted]
            if pending:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 4.0)
    return pending


# ---------------------------------------------------------------- shoppers


@dataclass
class PlacedOrder:
    reference: str
    card: str
    http_status: int
    answer: dict[str, Any]

    @property
    def execution_id(self) -> str | None:
        value = self.answer.get("executionId")
        return value if isinstance(value, str) else None

    @property
    def redirect_url(self) -> str | None:
        value = self.answer.get("redirectUrl")
        return value if isinstance(value, str) else None


def sdk_token(init_payload: dict[str, Any]) -> str:
    """The Secure Fields token inside client/init's ``data`` (base64 JSON, or an object)."""
    data = init_payload["data"]
    if isinstance(data, str):
        data = json.loads(base64.b64decode(data + "=" * (-len(data) % 4)))
    return str(data["token"])


@dataclass
class Shopper:
    """A storefront: client/init, Secure Fields tokenization at the sandbox, place-order."""

    checkout_url: str
    sandbox_url: str
    session: aiohttp.ClientSession

    async def _json(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None = None,
        *,
        timeout: float = 60.0,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        async with self.session.request(
            method, url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            text = await response.text()
            try:
                data = json.loads(text) if text else {}
            except ValueError:
                data = {"raw": text[:500]}
            return response.status, data if isinstance(data, dict) else {"value": data}

    async def tokenize(self, customer: str, card: str) -> str:
        status, init = await self._json(
            "POST",
            f"{self.checkout_url}/payments/init",
            {"holderReference": customer, "type": "secureFields"},
        )
        if status != 200:
            raise AssertionError(f"payments/init answered {status}: {init}")
        status, token = await self._json(
            "POST",
            f"{self.sandbox_url}/public/secure-fields/tokenize",
            {
                "sdkToken": sdk_token(init),
                "cardNumber": CARDS[card],
                "expiryMonth": "12",
                "expiryYear": str(datetime.now(UTC).year + 3),
                "securityCode": "123",
                "holderName": "E2E Shopper",
            },
            headers={"x-idempotency-key": str(uuid.uuid4())},  # as the Secure Fields iframe does
        )
        if status not in (200, 201):
            raise AssertionError(f"tokenize answered {status}: {token}")
        return str(token.get("paymentInstrumentId") or token["id"])

    async def place_order(
        self, reference: str, card: str, *, amount: str = "10.00", currency: str = "EUR"
    ) -> PlacedOrder:
        """One order end to end; retried like a storefront would on 503 (same body)."""
        customer = f"cust-{reference}"
        instrument = await self.tokenize(customer, card)
        body = {
            "paymentInstrumentId": instrument,
            "paymentMethodCode": "card",
            "amount": {"value": amount, "currency": currency},
            "orderReference": reference,
            "customerReference": customer,
        }
        status, answer = 0, dict[str, Any]()
        for _attempt in range(10):
            try:
                status, answer = await self._json(
                    "POST", f"{self.checkout_url}/checkout/place-order", body
                )
            except (aiohttp.ClientError, TimeoutError):
                status, answer = 0, {}
            if status not in (0, 502, 503, 504):
                break
            await asyncio.sleep(1.0)
        return PlacedOrder(reference, card, status, answer)


async def place_orders(
    shopper: Shopper, plan: Sequence[tuple[str, str]], *, concurrency: int = 16
) -> list[PlacedOrder]:
    """Place (reference, card) orders with bounded concurrency."""
    limit = asyncio.Semaphore(concurrency)

    async def one(reference: str, card: str) -> PlacedOrder:
        async with limit:
            return await shopper.place_order(reference, card)

    return list(await asyncio.gather(*(one(ref, card) for ref, card in plan)))
