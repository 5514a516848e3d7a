"""Scenario 10: hostile clients (slow, idle, floods of junk) while real shoppers pay.

The hostile mix goes to a checkout process of its own, started for this scenario with the
production per-address rate limit (the stack's checkout lifts it, since every shopper of the
other scenarios comes from 127.0.0.1) and, in the short size, HTTP deadlines short enough for a
quick run (the full size keeps the defaults). A real checkout sees each shopper and each
attacker come from an address of its own; here each real shopper binds its sockets to its own
address in 127.0.1.0/24 and the attackers to a few in 127.0.2.0/24 and 127.0.3.0/24 (all of
127.0.0.0/8 is loopback on Linux), so the per-address limit meets the flood, not the shoppers.
The shop's backend (merchant API) calls from 127.0.0.1.

The hostile mix, every part bounded in count and time:
- slow clients, in waves: connections that send nothing, request heads sent a byte at a time,
  bodies sent a byte at a time (without a session, and in a real order's session), and
  kept-alive connections left idle after one request;
- a flood of POST /checkout/place-order with junk instruments, with no session, made-up tokens,
  expired sessions (of orders the shop created, their expiry moved into the past in the
  database, as CHECKOUT_SESSION_TTL_SECONDS would), or the sessions of orders already paid;
- malicious scripts holding a real order's checkout session (taken from the shopper's page)
  that flood place-order with junk instruments: alone, from the attackers' addresses, or while
  the shopper pays, from the shopper's own address;
- anonymous GET /orders/{reference} of real references: no session, a made-up token, or
  another order's session.

The real shoppers meanwhile create orders through the shop and pay them with 4242 cards; a
real checkout's time (p99) runs from the shop creating the order to place-order's answer,
throttled answers and their retries included.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psycopg
import pytest

from tests.e2e.conftest import Scenario
from tests.e2e.counting import Figures, Ledger, metric_total, percentile, wait_until
from tests.e2e.drivers import (
    SESSION_HEADER,
    CheckoutSession,
    MerchantApi,
    PlacedOrder,
    Shopper,
    SlowClient,
    call_json,
    client_session,
    held_connections,
    loopback,
    paced,
)
from tests.e2e.flows import Judge
from tests.e2e.processes import ServiceProcess
from tests.e2e.sizes import size

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(size(120, 900))]

LOAD_SECONDS = size(6, 60)  # the attack, and the real shoppers arriving, last this long
REAL_ORDERS = size(24, 240)
FLOOD_PER_SECOND = size(100, 200)  # junk place-orders, over all attacker addresses
READS_PER_SECOND = size(30, 60)  # anonymous order reads
SLOW_PER_KIND = size(3, 25)  # slow clients of each kind, per wave
SLOW_WAVES = size(2, 3)  # waves of slow clients, spread over the attack
DRIP_SECONDS = 0.5  # a slow client sends one byte this often
HIJACKED = size(3, 10)  # orders whose session only a script uses
HIJACK_REQUESTS = 40  # junk place-orders per hijacked session: beyond the 30 a minute allowed
CONTESTED = size(2, 10)  # orders a script floods while their shopper pays them
CONTEST_REQUESTS = 8
EXPIRED = 2  # orders whose sessions expired: their tokens join the flood
ATTACKERS = size(1, 4)  # flood addresses: each sends past the per-address limit (300 a minute)
HEADER_TIMEOUT = size(2, 10)
BODY_TIMEOUT = size(2, 10)
KEEPALIVE_TIMEOUT = size(3, 15)
# After the longest deadline, before the slow clients' connections count: a loaded 2-core machine
# can run the door's timers a few seconds late.
GRACE_SECONDS = 5.0

SHOPPERS, FLOODERS, SLOWPOKES = 1, 2, 3  # address blocks: 127.0.<block>.x
JUNK_SESSION_KINDS = ("none", "made_up", "expired", "paid_order")
UNKNOWN_INSTRUMENTS = ("unknown_id", "unknown_uuid")  # well-formed: they reach Payrails
MALFORMED_INSTRUMENTS = ("injection", "too_long", "not_a_string")  # refused 422 at the door
# Without a valid session the door answers 401 before anything else, or 429 past the address's
# rate; in a real order's session the answer is the order's state, a 422 or a 429, a 409 when
# another card is tried while a payment is in flight or after the order is paid (retry after a
# decline), and 202/503 when Payrails is slow to answer (documented; the storefront retries).
NO_SESSION_ANSWERS = frozenset({401, 429})
IN_SESSION_ANSWERS = frozenset({200, 202, 409, 422, 429, 503})


def junk_instrument(index: int) -> Any:
    kind = (UNKNOWN_INSTRUMENTS + MALFORMED_INSTRUMENTS)[index % 5]
    return {
        "unknown_id": f"pi_{uuid.uuid4().hex}",
        "unknown_uuid": str(uuid.uuid4()),
        "injection": "x' OR '1'='1",
        "too_long": "a" * 500,
        "not_a_string": 4242424242424242,
    }[kind]


def junk_body(index: int) -> dict[str, Any]:
    return {"paymentInstrumentId": junk_instrument(index), "paymentMethodCode": "card"}


def made_up_token() -> str:
    return secrets.token_urlsafe(32)


async def expire_sessions(ledger: Ledger, references: list[str]) -> None:
    """Let these orders' checkout sessions run out now, as CHECKOUT_SESSION_TTL_SECONDS would."""
    async with await psycopg.AsyncConnection.connect(ledger.url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE checkout_sessions SET expires_at = TIMESTAMP '2000-01-01'"
            " WHERE order_id IN (SELECT id FROM orders WHERE reference = ANY(%s))",
            (references,),
        )


@dataclass
class Attack:
    """What the hostile clients sent, and what came back."""

    door: ServiceProcess
    flooders: list[aiohttp.ClientSession]
    expired: list[CheckoutSession]
    paid: list[CheckoutSession] = field(default_factory=list)  # grows as shoppers pay
    junk: Counter[tuple[str, int]] = field(default_factory=Counter)  # (session kind, status)
    scripts: Counter[tuple[str, int]] = field(default_factory=Counter)  # hijacked, contested
    reads: Counter[tuple[str, int]] = field(default_factory=Counter)  # (credential, status)

    def flooder(self, index: int) -> aiohttp.ClientSession:
        return self.flooders[(index // 10) % len(self.flooders)]

    async def junk_place_order(self, index: int) -> None:
        """One junk place-order, with no session or a session that is no good for it."""
        kind = JUNK_SESSION_KINDS[index % len(JUNK_SESSION_KINDS)]
        token = {
            "none": None,
            "made_up": made_up_token(),
            "expired": self.expired[index % len(self.expired)].token,
            "paid_order": self.paid[index % len(self.paid)].token if self.paid else None,
        }[kind]
        if kind == "paid_order" and token is None:
            kind, token = "made_up", made_up_token()  # no order paid yet
        headers = {SESSION_HEADER: token} if token else None
        answer = await call_json(
            self.flooder(index),
            "POST",
            f"{self.door.url}/checkout/place-order",
            junk_body(index // len(JUNK_SESSION_KINDS)),
            headers=headers,
            timeout=30.0,
        )
        self.junk[kind, answer.status] += 1

    async def script(
        self, http: aiohttp.ClientSession, checkout: CheckoutSession, kind: str, count: int
    ) -> None:
        """A malicious script with a real order's session: ``count`` junk place-orders."""

        async def one(index: int) -> None:
            answer = await call_json(
                http,
                "POST",
                f"{self.door.url}/checkout/place-order",
                junk_body(index),
                headers=checkout.headers,
                timeout=30.0,
            )
            self.scripts[kind, answer.status] += 1

        rate = max(count / LOAD_SECONDS, 4.0)
        await paced(count, one, rate=rate, max_seconds=LOAD_SECONDS, concurrency=4)

    async def anonymous_read(
        self, index: int, references: list[str], others: list[CheckoutSession]
    ) -> None:
        """GET /orders/{reference} of a real order without its session."""
        credential = ("none", "made_up", "other_order")[index % 3]
        headers = {
            "none": None,
            "made_up": {SESSION_HEADER: made_up_token()},
            "other_order": others[index % len(others)].headers,
        }[credential]
        answer = await call_json(
            self.flooder(index),
            "GET",
            f"{self.door.url}/orders/{references[index % len(references)]}",
            headers=headers,
            timeout=30.0,
        )
        self.reads[credential, answer.status] += 1


@dataclass
class RealShoppers:
    """Shoppers paying with 4242 cards, each from an address of its own."""

    door: ServiceProcess
    sandbox_url: str
    merchant_api_key: str
    references: list[str]
    paid: list[CheckoutSession]  # each paid order's session, for the flood to reuse
    seen: Counter[int] = field(default_factory=Counter)  # every answer, retries included
    seconds: list[float] = field(default_factory=list)
    placed: list[PlacedOrder] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    async def checkout(self, index: int) -> None:
        """One real checkout: the shop creates the order, the shopper pays it."""
        reference = self.references[index]
        async with client_session(loopback(SHOPPERS, index)) as http:
            shopper = Shopper(
                self.door.url, self.sandbox_url, http, self.merchant_api_key, seen=self.seen
            )
            began = time.monotonic()
            try:
                order = await shopper.place_order(reference, "approve")
            except AssertionError as exc:
                self.failures.append(f"{reference}: {exc}")
                return
            self.seconds.append(time.monotonic() - began)
            self.placed.append(order)
            self.paid.append(order.checkout)


def slow_wave(wave: int, port: int, session: CheckoutSession) -> list[SlowClient]:
    """One wave of slow clients, SLOW_PER_KIND of each kind, from the slow clients' block."""
    host = f"Host: 127.0.0.1:{port}\r\n"
    body_head = (
        "{host}Content-Type: application/json\r\nContent-Length: 4096\r\n{extra}\r\n"
        '{{"paymentInstrumentId": "'
    )
    kinds: dict[str, tuple[bytes, bytes]] = {
        "idle": (b"", b""),
        "slow_header": (f"GET /orders/x HTTP/1.1\r\n{host}".encode(), b"X-Slow: " + b"a" * 56),
        "slow_body": (
            (
                "POST /checkout/place-order HTTP/1.1\r\n" + body_head.format(host=host, extra="")
            ).encode(),
            b"a",
        ),
        "slow_body_in_session": (
            (
                "POST /payments/init HTTP/1.1\r\n"
                + body_head.format(host=host, extra=f"{SESSION_HEADER}: {session.token}\r\n")
            ).encode(),
            b"a",
        ),
        "idle_keep_alive": (f"GET /healthz HTTP/1.1\r\n{host}\r\n".encode(), b""),
    }
    clients = []
    for kind, (opening, drip) in kinds.items():
        for i in range(SLOW_PER_KIND):
            source = loopback(SLOWPOKES, wave * 50 + i)
            clients.append(SlowClient(kind, source, opening, drip, DRIP_SECONDS))
    return clients


async def test_hostile_clients_get_nothing_while_real_shoppers_pay(scenario: Scenario) -> None:
    stack, control, ledger, backend, tag, _ = scenario
    key = stack.config.credentials.merchant_api_key
    door = await stack.add_checkout(
        CHECKOUT_RATE_LIMIT_PER_ADDRESS="300",  # the production default
        DATABASE_POOL_SIZE="10",  # the production default; the stack's own processes share less
        HTTP_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        HTTP_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        HTTP_KEEPALIVE_TIMEOUT_SECONDS=str(KEEPALIVE_TIMEOUT),
    )
    door_port = int(door.url.rsplit(":", 1)[1])
    orders_before = sum((await ledger.status_counts()).values())

    # The shop creates the orders the scripts will hold, and some whose sessions then expire.
    async with aiohttp.ClientSession() as http:
        merchant = MerchantApi(door.url, http, key)

        async def session_of(reference: str) -> CheckoutSession:
            created = await merchant.create_order(reference)
            assert created.checkout is not None
            return created.checkout

        hijacked = [await session_of(f"{tag}h{i:03d}") for i in range(HIJACKED)]
        expired_refs = [f"{tag}x{i:03d}" for i in range(EXPIRED)]
        expired = [await session_of(ref) for ref in expired_refs]
        slow_sessions = [await session_of(f"{tag}s{w:03d}") for w in range(SLOW_WAVES)]
        contested_sessions = [await session_of(f"{tag}c{i:03d}") for i in range(CONTESTED)]
    await expire_sessions(ledger, expired_refs)

    real_refs = [f"{tag}r{i:05d}" for i in range(REAL_ORDERS)]
    flooders = [client_session(loopback(FLOODERS, i)) for i in range(ATTACKERS)]
    attack = Attack(door, flooders, expired)
    real = RealShoppers(door, stack.sandbox_url, key, real_refs, attack.paid)
    slow: list[SlowClient] = []
    slow_tasks: list[asyncio.Task[None]] = []
    waves_opened: list[float] = []  # monotonic times
    deadline = max(HEADER_TIMEOUT, BODY_TIMEOUT, KEEPALIVE_TIMEOUT)
    hold_seconds = LOAD_SECONDS + deadline + 60.0  # no slow client lives longer in any case
    started = time.monotonic()

    async def contested(index: int) -> None:
        """The shopper pays while a script in the same page floods the same session."""
        reference, checkout = f"{tag}c{index:03d}", contested_sessions[index]
        async with client_session(loopback(SHOPPERS, 200 + index)) as http:
            shopper = Shopper(door.url, stack.sandbox_url, http, key)
            paying = shopper.pay(reference, checkout, "approve")
            flood = attack.script(http, checkout, "contested", CONTEST_REQUESTS)
            await asyncio.gather(paying, flood)

    async def slow_waves() -> None:
        """Open the waves of slow clients, spread over the attack."""
        for wave in range(SLOW_WAVES):
            due = started + wave * LOAD_SECONDS / SLOW_WAVES
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            clients = slow_wave(wave, door_port, slow_sessions[wave])
            slow.extend(clients)
            waves_opened.append(time.monotonic())
            slow_tasks.extend(
                asyncio.create_task(c.run("127.0.0.1", door_port, max_seconds=hold_seconds))
                for c in clients
            )

    flood_count = FLOOD_PER_SECOND * LOAD_SECONDS
    read_count = READS_PER_SECOND * LOAD_SECONDS
    try:
        async with client_session(loopback(FLOODERS, 100)) as script_http:
            scripts = [
                attack.script(script_http, checkout, "hijacked", HIJACK_REQUESTS)
                for checkout in hijacked
            ]
            await asyncio.gather(
                slow_waves(),
                paced(REAL_ORDERS, real.checkout, rate=REAL_ORDERS / LOAD_SECONDS,
                      max_seconds=LOAD_SECONDS + 1, concurrency=64),
                paced(flood_count, attack.junk_place_order, rate=FLOOD_PER_SECOND,
                      max_seconds=LOAD_SECONDS, concurrency=128),
                paced(read_count, lambda i: attack.anonymous_read(i, real_refs, hijacked),
                      rate=READS_PER_SECOND, max_seconds=LOAD_SECONDS, concurrency=32),
                *scripts,
                *(contested(i) for i in range(CONTESTED)),
            )  # fmt: skip
        load_seconds = time.monotonic() - started
        # Every deadline of the door has run out for the last wave: count what is still open.
        census_at = max(waves_opened) + deadline + GRACE_SECONDS
        await asyncio.sleep(max(0.0, census_at - time.monotonic()))
        held = held_connections(slow, door_port)
        still_open = [c for c in slow if c.opened_at is not None and c.closed_by_server_at is None]
    finally:
        for task in slow_tasks:
            task.cancel()
        await asyncio.gather(*slow_tasks, return_exceptions=True)
        await asyncio.gather(*(f.close() for f in flooders))

    # Everything this scenario created settles: no order left authorizing.
    async def settled() -> bool:
        rows = await ledger.orders(tag)
        return all(r.status not in ("authorizing", "action_required") for r in rows.values())

    await wait_until(settled, timeout=60)
    verdict = await Judge(control, ledger, backend).settle(
        f"{tag}r", expected_orders=REAL_ORDERS, timeout=60
    )
    rows = await ledger.orders(tag)
    real_status = Counter(rows[r].status for r in real_refs if r in rows)
    hijacked_status = Counter(r.status for ref, r in rows.items() if ref.startswith(f"{tag}h"))
    contested_status = Counter(r.status for ref, r in rows.items() if ref.startswith(f"{tag}c"))
    expired_status = Counter(r.status for ref, r in rows.items() if ref.startswith(f"{tag}x"))
    # Junk reaches orders only through the sessions of this scenario's orders, all under ``tag``;
    # without the merchant key it creates none (counted over the whole database).
    new_orders = sum((await ledger.status_counts()).values()) - orders_before
    created_here = REAL_ORDERS + HIJACKED + EXPIRED + SLOW_WAVES + CONTESTED
    needs_review = sum(1 for r in rows.values() if r.status == "needs_review")
    review_messages = sum(
        1 for ref in rows if backend.by_order.get(ref, {}).get("order.needs_review")
    )
    metrics_url = [f"{door.admin_url}/metrics"]
    cut_offs = {
        phase: int(await metric_total(metrics_url, "recon_http_client_timeouts_total", phase=phase))
        for phase in ("idle", "header", "body")
    }
    limited = {
        scope: int(
            await metric_total(metrics_url, "recon_checkout_rate_limited_total", scope=scope)
        )
        for scope in ("address", "session")
    }
    stack.check_alive()

    junk_by_status = Counter[int]()
    for (_, status), n in attack.junk.items():
        junk_by_status[status] += n
    junk_no_session = {(k, s): n for (k, s), n in attack.junk.items() if k != "paid_order"}
    non_404_reads = {key: n for key, n in attack.reads.items() if key[1] != 404}
    in_session = [
        *attack.scripts.items(),
        *((k, n) for k, n in attack.junk.items() if k[0] == "paid_order"),
    ]
    bad_junk = {
        key: n for key, n in junk_no_session.items() if key[1] not in NO_SESSION_ANSWERS
    } | {key: n for key, n in in_session if key[1] not in IN_SESSION_ANSWERS}
    held_for = [c.held_seconds for c in slow if c.held_seconds is not None]
    answers_by_kind: dict[str, Counter[int | None]] = {}
    for client in slow:
        answers_by_kind.setdefault(client.kind, Counter())[client.answer_status] += 1

    figures = Figures("s10 hostile clients")
    figures["real_orders"] = REAL_ORDERS
    figures["real_paid"] = real_status.get("paid", 0)
    figures["real_p99_s"] = percentile(real.seconds, 0.99)
    figures["real_p50_s"] = percentile(real.seconds, 0.50)
    figures["real_throttled_answers"] = real.seen[429] + real.seen[503]
    figures["needs_review_from_junk"] = needs_review
    figures["needs_review_messages"] = review_messages
    figures["slow_clients"] = len(slow)
    figures["slow_connections_held"] = held
    figures["slow_longest_held_s"] = max(held_for, default=0.0)
    figures["slow_answers"] = {k: dict(v) for k, v in answers_by_kind.items()}
    figures["junk_place_orders"] = sum(attack.junk.values())
    figures["junk_statuses"] = dict(sorted(junk_by_status.items()))
    figures["script_statuses"] = dict(sorted(attack.scripts.items()))
    figures["hijacked_orders"] = dict(hijacked_status)
    figures["contested_orders"] = dict(contested_status)
    figures["expired_session_orders"] = dict(expired_status)
    figures["anonymous_reads"] = sum(attack.reads.values())
    figures["anonymous_non_404"] = sum(non_404_reads.values())
    figures["orders_created_by_junk"] = new_orders - created_here
    figures["door_cut_offs"] = cut_offs
    figures["door_rate_limited"] = limited
    figures["load_s"] = load_seconds
    figures.print(stack.config.run_dir)

    assert real.failures == [], real.failures[:5]
    assert real_status == {"paid": REAL_ORDERS}, real_status
    assert verdict.ok, verdict
    assert needs_review == 0, needs_review
    assert review_messages == 0, review_messages
    assert new_orders == created_here, "orders appeared that the shop did not create"
    assert set(hijacked_status) <= {"created", "payment_failed"}, hijacked_status
    assert set(contested_status) <= {"paid", "payment_failed"}, contested_status
    assert set(expired_status) <= {"created", "payment_failed"}, expired_status
    assert non_404_reads == {}, non_404_reads
    assert bad_junk == {}, bad_junk
    assert limited["address"] > 0, "the flood never met the per-address limit"
    assert all(c.error is None for c in slow), Counter(c.error for c in slow)
    assert held == 0, f"{held} slow connections still open: {Counter(c.kind for c in still_open)}"
    assert still_open == [], Counter(c.kind for c in still_open)
    late = [c.kind for c in slow if (c.held_seconds or 0.0) > deadline + GRACE_SECONDS]
    assert late == [], Counter(late)
