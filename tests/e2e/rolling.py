"""A deploy's rolling restart, and the load that runs through it.

``rolling_restart`` replaces every service process one at a time, as a Kubernetes rolling
update does: the old process gets SIGTERM and is waited for, a new one starts with the same
environment and port, and the next is touched only once the new one is ready (``/readyz`` on
an ingress's admin port, the worker's dependency-checking ``/healthz``).

A real deploy has a load balancer in front of the webhook ingresses; here ``Rotation`` plays
it. Before an ingress gets SIGTERM it leaves the rotation (the endpoint removal the pods'
preStop sleep waits for), and a request whose connection fails is sent once more to another
ingress in the rotation (HAProxy's ``retry-on conn-failure``, nginx's ``proxy_next_upstream
error``). Resending is safe: the ingress deduplicates by event id. The single checkout has no
twin to fail over to, so its shoppers ride out its restart as a storefront does: they send the
same request again while there is no answer (``call_until_answered``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psycopg

from tests.e2e.counting import CommerceBackend, Ledger
from tests.e2e.drivers import WEBHOOK_PATH, Delivery, LoadResult, PlacedOrder, post_delivery
from tests.e2e.flows import finish_challenges, storefront
from tests.e2e.harness import Stack
from tests.e2e.processes import ServiceProcess

READY_TIMEOUT_SECONDS = 120.0  # a slow, shared machine: generous, never asserted on
EXIT_GRACE_SECONDS = 60.0  # past every process's own shutdown grace; SIGKILL only after it


# ---------------------------------------------------------------- the load balancer


class Rotation:
    """The load balancer's endpoints: the ingress URLs that receive new requests."""

    def __init__(self, urls: Iterable[str]) -> None:
        self.urls = list(urls)
        self._out: set[str] = set()
        self._next = 0
        self.rerouted = 0  # requests sent again to another ingress after a failed connection

    def take_out(self, url: str) -> None:
        self._out.add(url)

    def put_back(self, url: str) -> None:
        self._out.discard(url)

    def pick(self, avoid: str | None = None) -> str:
        """The next URL in the rotation, round-robin (never ``avoid`` when another is in)."""
        live = [u for u in self.urls if u not in self._out and u != avoid]
        live = live or [u for u in self.urls if u not in self._out] or self.urls
        self._next += 1
        return live[self._next % len(live)]

    async def post(self, session: aiohttp.ClientSession, delivery: Delivery) -> int:
        """POST through the balancer: a failed connection is tried once on another ingress."""
        url = self.pick()
        status = await post_delivery(session, url + WEBHOOK_PATH, delivery)
        if status == 0 and len(self.urls) > 1:
            self.rerouted += 1
            status = await post_delivery(session, self.pick(avoid=url) + WEBHOOK_PATH, delivery)
        return status


async def balanced_load(
    rotation: Rotation,
    deliveries: Sequence[Delivery],
    *,
    rate: float,
    done: asyncio.Event,
    concurrency: int = 128,
) -> LoadResult:
    """Send ``deliveries`` at ``rate`` per second through ``rotation`` until ``done`` is set
    or they run out; each status counted is the balancer's final answer."""
    result = LoadResult(started=time.monotonic())
    limit = asyncio.Semaphore(concurrency)
    tasks: list[asyncio.Task[int]] = []

    async def one(session: aiohttp.ClientSession, delivery: Delivery) -> int:
        async with limit:
            return await rotation.post(session, delivery)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        for index, delivery in enumerate(deliveries):
            if done.is_set():
                break
            pause = result.started + index / rate - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            tasks.append(asyncio.create_task(one(session, delivery)))
        statuses = await asyncio.gather(*tasks)
    result.sent = len(statuses)
    result.finished = time.monotonic()
    result.by_status = dict(Counter(statuses))
    return result


# ---------------------------------------------------------------- shoppers


@dataclass
class ShopperLoad:
    """Shoppers paying through the checkout, ``lanes`` at a time, until told to stop."""

    placed: list[PlacedOrder] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "reference: why"
    seen: Counter[int] = field(default_factory=Counter)  # every checkout answer, retries too

    @property
    def started(self) -> int:
        return len(self.placed) + len(self.failed)

    async def run(
        self,
        stack: Stack,
        orders: Sequence[tuple[str, str]],
        *,
        lanes: int,
        done: asyncio.Event,
    ) -> None:
        """Place ``orders`` in order, ``lanes`` at once, starting none after ``done`` is set.

        A checkout fails when a step of it ends in an error the shopper cannot retry (the
        shop's own retries included), or place-order's last answer is neither 200 nor 202.
        """
        queue = list(reversed(orders))
        async with aiohttp.ClientSession() as session:
            shopper = storefront(stack, session)
            shopper.seen = self.seen

            async def lane() -> None:
                while queue and not done.is_set():
                    reference, card = queue.pop()
                    try:
                        order = await shopper.place_order(reference, card)
                    except AssertionError as exc:
                        self.failed.append(f"{reference}: {exc}")
                        continue
                    if order.http_status in (200, 202):
                        self.placed.append(order)
                    else:
                        self.failed.append(f"{reference}: place-order {order.http_status}")

            await asyncio.gather(*(lane() for _ in range(lanes)))
            await finish_challenges(shopper, self.placed)


# ---------------------------------------------------------------- the restart itself


@dataclass(frozen=True)
class Restart:
    """One process replaced: how it ended, and how long the slot had no ready process."""

    name: str
    exit_code: int | None
    stop_s: float  # SIGTERM to exit
    ready_s: float  # start to ready

    @property
    def graceful(self) -> bool:
        return self.exit_code == 0


def ready_url(process: ServiceProcess) -> str:
    """Where the harness sees the process ready: /readyz on an ingress's admin port (broker
    and database), the worker's /healthz (its connection and the database)."""
    if process.args[:1] == ["ingress"] and process.admin_url is not None:
        return process.admin_url + "/readyz"
    return process.health_url


async def wait_ready(process: ServiceProcess, timeout: float = READY_TIMEOUT_SECONDS) -> float:
    """Wait until ``ready_url`` answers 200; return the seconds it took."""
    started = time.monotonic()
    url = ready_url(process)
    async with aiohttp.ClientSession() as session:
        while time.monotonic() - started < timeout:
            process.check_alive()
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=3)) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{process.name} not ready after {timeout}s\n{process.tail()}")


async def restart(
    process: ServiceProcess, rotation: Rotation | None = None, *, drain: float = 0.0
) -> Restart:
    """Replace one process: out of ``rotation`` (if it is in one) for ``drain`` seconds, SIGTERM,
    wait for the exit, start it again (same environment, same port), wait until ready, back
    into the rotation."""
    if rotation is not None:
        rotation.take_out(process.url)
        await asyncio.sleep(drain)
    stopping = time.monotonic()
    code = await process.stop(grace=EXIT_GRACE_SECONDS)
    stop_s = time.monotonic() - stopping
    process.start()
    ready_s = await wait_ready(process)
    if rotation is not None:
        rotation.put_back(process.url)
    return Restart(process.name, code, stop_s, ready_s)


async def rolling_restart(stack: Stack, rotation: Rotation, *, drain: float) -> list[Restart]:
    """Every service process of ``stack`` (not the sandbox: it is Payrails), one at a time:
    the webhook ingresses, the checkout, then the workers."""
    done: list[Restart] = []
    for ingress in list(stack.ingresses):
        done.append(await restart(ingress, rotation, drain=drain))
    if stack.checkout is not None:
        done.append(await restart(stack.checkout))
    for worker in list(stack.workers):
        done.append(await restart(worker))
    return done


# ---------------------------------------------------------------- order.* messages


async def outbox_message_ids(ledger: Ledger, reference_prefix: str) -> dict[str, str]:
    """message id -> routing key of every outbox row about the orders of ``reference_prefix``."""
    async with await psycopg.AsyncConnection.connect(ledger.url, connect_timeout=5) as conn:
        cursor = await conn.execute(
            "SELECT b.message_id, b.routing_key FROM outbox b JOIN orders o ON o.id = b.order_id"
            " WHERE o.reference LIKE %s AND b.routing_key LIKE 'order.%%'",
            (reference_prefix + "%",),
        )
        return {str(r[0]): str(r[1]) for r in await cursor.fetchall()}


@dataclass(frozen=True)
class MessageCount:
    """The ``order.*`` messages of some orders against what the commerce backend received."""

    written: int  # outbox rows: messages the service owes
    received: int  # distinct message ids the backend got
    lost: list[str]  # written, never received
    doubled: list[str]  # "reference:routing key" announced under more than one message id
    redelivered: int  # the same message id again (deduplicated by the consumer)


def count_messages(
    backend: CommerceBackend, owed: dict[str, str], references: Iterable[str]
) -> MessageCount:
    refs = list(references)
    keys = set(owed.values())
    doubled = [
        f"{ref}:{key}" for key in sorted(keys) for ref in backend.duplicated(refs, routing_key=key)
    ]
    return MessageCount(
        written=len(owed),
        received=sum(1 for m in owed if m in backend.messages),
        lost=sorted(m for m in owed if m not in backend.messages),
        doubled=doubled,
        redelivered=backend.deliveries - len(backend.messages),
    )


# ---------------------------------------------------------------- Payrails' own deliveries


@dataclass(frozen=True)
class PayrailsWebhooks:
    """The sandbox's webhook deliveries: it posts to the first ingress directly, with no
    balancer in between, and retries what got no 2xx, as Payrails does."""

    deliveries: int
    attempts: int
    unanswered: int  # attempts that got no HTTP answer (connection refused or reset)
    statuses: dict[int, int]  # the HTTP answers attempts got
    undelivered: list[str]  # deliveries that did not end delivered

    @classmethod
    def of(cls, deliveries: Sequence[dict[str, Any]]) -> PayrailsWebhooks:
        history = [attempt for d in deliveries for attempt in d["history"]]
        return cls(
            deliveries=len(deliveries),
            attempts=len(history),
            unanswered=sum(1 for a in history if a["status"] is None),
            statuses=dict(Counter(a["status"] for a in history if a["status"] is not None)),
            undelivered=[
                f"{d['id']}:{d['status']}" for d in deliveries if d["status"] != "delivered"
            ],
        )
