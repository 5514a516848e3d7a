"""Load drivers: shops (merchant API, then shopper) at the checkout; signed webhook deliveries."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import socket
import struct
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from shared.config import SANDBOX_MERCHANT_API_KEY
from shared.events import derive_event_id

CARDS = {
    "approve": "4242424242424242",
    "challenge": "4000000000003220",
    "decline": "4000000000009995",
    "cascade": "4000002760003184",
    "unknown": "4000000000000119",
}
WEBHOOK_PATH = "/webhooks/payrails"
T = TypeVar("T")


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


async def paced(
    count: int,
    send: Callable[[int], Awaitable[T]],
    *,
    rate: float,
    max_seconds: float,
    concurrency: int = 256,
) -> list[T]:
    """Start ``send(0)``, ``send(1)``... at ``rate`` per second, at most ``concurrency`` at
    once; none is started after ``max_seconds``. Returns the results of those started."""
    started = time.monotonic()
    limit = asyncio.Semaphore(concurrency)
    tasks: list[asyncio.Task[T]] = []

    async def one(index: int) -> T:
        async with limit:
            return await send(index)

    for index in range(count):
        due = started + index / rate
        if due - started > max_seconds:
            break
        if (pause := due - time.monotonic()) > 0:
            await asyncio.sleep(pause)
        tasks.append(asyncio.create_task(one(index)))
    return list(await asyncio.gather(*tasks))


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
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send(index: int) -> int:
            url = urls[index % len(urls)] + WEBHOOK_PATH
            return await post_delivery(session, url, deliveries[index])

        statuses = await paced(
            len(deliveries), send, rate=rate, max_seconds=max_seconds, concurrency=concurrency
        )
    result.sent = len(statuses)
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


# ---------------------------------------------------------------- the shop: merchant API, shoppers

MERCHANT_ORDERS_PATH = "/merchant/orders"
SESSION_HEADER = "X-Checkout-Session"
# Answers a client sends again unchanged: none at all (0), throttled, or unavailable for now.
RETRYABLE = frozenset({0, 429, 502, 503, 504})
RETRY_SECONDS = 60.0  # how long one step of the shop keeps trying
RETRY_PAUSE_SECONDS = 1.0  # between tries, when the answer carries no Retry-After


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status (0 for none at all), JSON object body, Retry-After seconds."""

    status: int
    body: dict[str, Any]
    retry_after: float | None = None


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


async def call_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Answer:
    """One JSON request; a body that is not a JSON object is kept under ``raw`` or ``value``."""
    try:
        async with session.request(
            method, url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            text = await response.text()
            status = response.status
            retry_after = _retry_after(response.headers.get("Retry-After"))
    except (aiohttp.ClientError, TimeoutError):
        return Answer(0, {})
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        data = {"raw": text[:500]}
    return Answer(status, data if isinstance(data, dict) else {"value": data}, retry_after)


async def call_until_answered(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    seen: Counter[int] | None = None,
) -> Answer:
    """The same request again while the answer is :data:`RETRYABLE`, for RETRY_SECONDS at most,
    pausing as Retry-After says: what a shop's backend or storefront does. Every answer's
    status is counted in ``seen``, when given."""
    deadline = time.monotonic() + RETRY_SECONDS
    while True:
        answer = await call_json(session, method, url, body, headers=headers)
        if seen is not None:
            seen[answer.status] += 1
        left = deadline - time.monotonic()
        if answer.status not in RETRYABLE or left <= 0:
            return answer
        await asyncio.sleep(min(answer.retry_after or RETRY_PAUSE_SECONDS, left))


@dataclass(frozen=True)
class CheckoutSession:
    """What the shop hands its shopper for one order: a token, sent as the session header."""

    token: str
    expires_at: str
    checkout_url: str

    @property
    def headers(self) -> dict[str, str]:
        return {SESSION_HEADER: self.token}


@dataclass(frozen=True)
class MerchantOrder:
    """The merchant API's answer: the order, and its checkout session while it can be paid."""

    http_status: int
    order: dict[str, Any]
    checkout: CheckoutSession | None


@dataclass
class MerchantApi:
    """A commerce backend: creates orders (amount, currency, customer) with its API key."""

    checkout_url: str
    session: aiohttp.ClientSession
    api_key: str = SANDBOX_MERCHANT_API_KEY
    seen: Counter[int] | None = None  # statuses of its calls, retries too

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    async def create_order(
        self,
        reference: str,
        *,
        amount: str = "10.00",
        currency: str = "EUR",
        customer: str | None = None,
    ) -> MerchantOrder:
        """POST /merchant/orders, retried while unanswered: the same terms are the same order."""
        body = {
            "orderReference": reference,
            "amount": {"value": amount, "currency": currency},
            "customerReference": customer or f"cust-{reference}",
        }
        answer = await call_until_answered(
            self.session,
            "POST",
            self.checkout_url + MERCHANT_ORDERS_PATH,
            body,
            headers=self.auth,
            seen=self.seen,
        )
        if answer.status not in (200, 201):
            raise AssertionError(f"merchant create order answered {answer.status}: {answer.body}")
        issued = answer.body.get("checkoutSession")
        checkout = (
            CheckoutSession(issued["token"], issued["expiresAt"], issued["checkoutUrl"])
            if isinstance(issued, dict)
            else None
        )
        return MerchantOrder(answer.status, dict(answer.body["order"]), checkout)


@dataclass
class PlacedOrder:
    reference: str
    card: str
    http_status: int
    answer: dict[str, Any]
    checkout: CheckoutSession  # the shopper's session: reads of the order need it

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
    """A shop and its storefront: the shop's backend creates the order over the merchant API;
    the shopper pays it in the checkout session it was handed (client/init, Secure Fields
    tokenization at the sandbox, place-order) and reads it back in that session."""

    checkout_url: str
    sandbox_url: str
    session: aiohttp.ClientSession
    merchant_api_key: str = SANDBOX_MERCHANT_API_KEY
    seen: Counter[int] | None = None  # statuses of the shopper's checkout calls, retries too

    @property
    def merchant(self) -> MerchantApi:
        return MerchantApi(self.checkout_url, self.session, self.merchant_api_key, self.seen)

    async def tokenize(self, checkout: CheckoutSession, card: str) -> str:
        init = await call_until_answered(
            self.session,
            "POST",
            f"{self.checkout_url}/payments/init",
            {"type": "secureFields"},
            headers=checkout.headers,
            seen=self.seen,
        )
        if init.status != 200:
            raise AssertionError(f"payments/init answered {init.status}: {init.body}")
        token = await call_json(
            self.session,
            "POST",
            f"{self.sandbox_url}/public/secure-fields/tokenize",
            {
                "sdkToken": sdk_token(init.body),
                "cardNumber": CARDS[card],
                "expiryMonth": "12",
                "expiryYear": str(datetime.now(UTC).year + 3),
                "securityCode": "123",
                "holderName": "E2E Shopper",
            },
            headers={"x-idempotency-key": str(uuid.uuid4())},  # as the Secure Fields iframe does
        )
        if token.status not in (200, 201):
            raise AssertionError(f"tokenize answered {token.status}: {token.body}")
        return str(token.body.get("paymentInstrumentId") or token.body["id"])

    async def place_order(
        self, reference: str, card: str, *, amount: str = "10.00", currency: str = "EUR"
    ) -> PlacedOrder:
        """One order end to end; each step retried like a shop would (same request again)."""
        created = await self.merchant.create_order(reference, amount=amount, currency=currency)
        if created.checkout is None:
            raise AssertionError(f"order {reference} can no longer be paid: {created.order}")
        return await self.pay(reference, created.checkout, card, amount=amount, currency=currency)

    async def pay(
        self,
        reference: str,
        checkout: CheckoutSession,
        card: str,
        *,
        amount: str = "10.00",
        currency: str = "EUR",
    ) -> PlacedOrder:
        """Pay an order the shop created, in the checkout session it handed out."""
        instrument = await self.tokenize(checkout, card)
        body = {  # the storefront's body: amount and reference are checked against the order
            "paymentInstrumentId": instrument,
            "paymentMethodCode": "card",
            "amount": {"value": amount, "currency": currency},
            "orderReference": reference,
        }
        answer = await call_until_answered(
            self.session,
            "POST",
            f"{self.checkout_url}/checkout/place-order",
            body,
            headers=checkout.headers,
            seen=self.seen,
        )
        return PlacedOrder(reference, card, answer.status, answer.body, checkout)

    async def order_view(self, placed: PlacedOrder) -> dict[str, Any]:
        """GET /orders/{reference} in the order's checkout session; {} unless answered 200."""
        answer = await call_json(
            self.session,
            "GET",
            f"{self.checkout_url}/orders/{placed.reference}",
            headers=placed.checkout.headers,
            timeout=10.0,
        )
        return answer.body if answer.status == 200 else {}


async def place_orders(
    shopper: Shopper, plan: Sequence[tuple[str, str]], *, concurrency: int = 16
) -> list[PlacedOrder]:
    """Place (reference, card) orders with bounded concurrency."""
    limit = asyncio.Semaphore(concurrency)

    async def one(reference: str, card: str) -> PlacedOrder:
        async with limit:
            return await shopper.place_order(reference, card)

    return list(await asyncio.gather(*(one(ref, card) for ref, card in plan)))


# ---------------------------------------------------------------- client addresses, hostile clients
#
# A real checkout sees its shoppers, and whoever attacks it, come from addresses of their own,
# and limits requests per address. On Linux all of 127.0.0.0/8 is loopback, so a client here
# binds its sockets to an address of its own in it (shoppers one block, attackers another) and
# the checkout sees distinct clients, every one of them still on this machine.


def loopback(block: int, index: int) -> str:
    """The ``index``-th client address of ``block``: 127.0.<block>.1 to 127.0.<block>.254."""
    return f"127.0.{block}.{index % 254 + 1}"


def client_session(source: str, *, limit: int = 100) -> aiohttp.ClientSession:
    """An HTTP client whose connections all come from the address ``source``."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, local_addr=(source, 0))
    )


@dataclass
class SlowClient:
    """One hostile connection: it sends ``opening``, then ``drip`` a byte every ``interval``
    seconds, forever, until the server closes the connection (or ``max_seconds`` pass)."""

    kind: str
    source: str
    opening: bytes = b""
    drip: bytes = b""
    interval: float = 1.0
    local: tuple[str, int] | None = None  # the client's end of the connection, once open
    opened_at: float | None = None
    closed_by_server_at: float | None = None
    answer: bytes = b""  # the start of what the server sent back, if anything
    error: str | None = None  # why it could not connect

    @property
    def held_seconds(self) -> float | None:
        """How long the server kept the connection open (None: it has not closed it)."""
        if self.opened_at is None or self.closed_by_server_at is None:
            return None
        return self.closed_by_server_at - self.opened_at

    @property
    def answer_status(self) -> int | None:
        """The status of the server's answer, if it sent one before closing."""
        parts = self.answer.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None

    async def _read_until_closed(self, reader: asyncio.StreamReader) -> None:
        try:
            while chunk := await reader.read(4096):
                if len(self.answer) < 64:
                    self.answer += chunk[: 64 - len(self.answer)]
        except OSError:  # reset: closed as well
            pass
        self.closed_by_server_at = time.monotonic()

    async def run(self, host: str, port: int, *, max_seconds: float) -> None:
        """Connect from ``source``, then send as slowly as described until the server closes."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, local_addr=(self.source, 0)), 5.0
            )
        except (OSError, TimeoutError) as exc:
            self.error = type(exc).__name__
            return
        self.opened_at = time.monotonic()
        self.local = writer.get_extra_info("sockname")[:2]
        closed = asyncio.create_task(self._read_until_closed(reader))
        drops = itertools.cycle(self.drip[i : i + 1] for i in range(len(self.drip)))
        try:
            writer.write(self.opening)
            deadline = self.opened_at + max_seconds
            while not closed.done() and time.monotonic() < deadline:
                await asyncio.wait({closed}, timeout=self.interval)
                if self.drip and not closed.done():
                    writer.write(next(drops))
        finally:
            closed.cancel()
            writer.close()


def established_clients(port: int, *, tables: Sequence[str] = ("tcp", "tcp6")) -> set[str]:
    """Client ends (``host:port``) of every ESTABLISHED TCP connection to ``port`` on this
    machine, as the kernel lists them (either end still open counts), from /proc/net."""
    found: set[str] = set()
    for table in tables:
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) < 4 or fields[3] != "01":  # 01: ESTABLISHED
                continue
            local, remote = _endpoint(fields[1]), _endpoint(fields[2])
            if local[1] == port:
                found.add(f"{remote[0]}:{remote[1]}")
            elif remote[1] == port:
                found.add(f"{local[0]}:{local[1]}")
    return found


def _endpoint(text: str) -> tuple[str, int]:
    """/proc/net/tcp's ``0100007F:1F90`` (little-endian words) as ("127.0.0.1", 8080)."""
    address, port = text.split(":")
    raw = bytes.fromhex(address)
    words = b"".join(struct.pack("<I", w) for w in struct.unpack(f">{len(raw) // 4}I", raw))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    host = socket.inet_ntop(family, words)
    if host.startswith("::ffff:") and "." in host:
        host = host.removeprefix("::ffff:")
    return host, int(port, 16)


def held_connections(clients: Iterable[SlowClient], port: int) -> int:
    """How many of ``clients`` still have an ESTABLISHED connection to ``port``."""
    open_now = established_clients(port)
    return sum(1 for c in clients if c.local and f"{c.local[0]}:{c.local[1]}" in open_now)
