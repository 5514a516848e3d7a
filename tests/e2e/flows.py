"""Steps the scenarios share: shoppers, 3-D Secure challenges, and the verdict on every order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from tests.e2e.counting import CommerceBackend, Ledger
from tests.e2e.drivers import Delivery, PlacedOrder, Shopper, deliveries_for, place_orders
from tests.e2e.harness import SandboxControl, Stack
from tests.e2e.tap import running_tap

TERMINAL = frozenset({"paid", "payment_failed", "needs_review"})
ANNOUNCED = {
    "paid": "order.paid",
    "payment_failed": "order.payment_failed",
    "needs_review": "order.needs_review",
}
MIX = ("approve", "approve", "challenge", "decline", "cascade", "unknown")


def plan(tag: str, count: int, cards: Sequence[str] = MIX) -> list[tuple[str, str]]:
    """``count`` (reference, card) pairs cycling through ``cards``."""
    return [(f"{tag}{i:05d}", cards[i % len(cards)]) for i in range(count)]


async def resolve_challenge(
    session: aiohttp.ClientSession, redirect_url: str, *, complete: bool = True
) -> int:
    """Press Complete (or Fail) on the sandbox's hosted 3-D Secure page."""
    outcome = "complete" if complete else "fail"
    async with session.post(
        redirect_url,
        data={"outcome": outcome},
        allow_redirects=False,
        timeout=aiohttp.ClientTimeout(total=30),
    ) as response:
        await response.read()
        return response.status


def storefront(stack: Stack, session: aiohttp.ClientSession) -> Shopper:
    """The stack's shop: its merchant API key, its checkout and the sandbox's Secure Fields."""
    return Shopper(
        stack.checkout_url, stack.sandbox_url, session, stack.config.credentials.merchant_api_key
    )


async def shop(
    stack: Stack,
    orders: Sequence[tuple[str, str]],
    *,
    concurrency: int = 16,
    challenges: bool = True,
) -> list[PlacedOrder]:
    """Create the orders (merchant API), pay each in its checkout session, finish every 3-D
    Secure challenge."""
    async with aiohttp.ClientSession() as session:
        shopper = storefront(stack, session)
        placed = await place_orders(shopper, orders, concurrency=concurrency)
        if challenges:
            await finish_challenges(shopper, placed)
    return placed


async def challenge_of(shopper: Shopper, placed: PlacedOrder, timeout: float) -> str | None:
    """The order's 3-D Secure URL, waiting while place-order answered 202 processing."""
    deadline = time.monotonic() + timeout
    while placed.redirect_url is None and placed.card in ("challenge", "cascade"):
        view = await shopper.order_view(placed)
        url = view.get("redirectUrl")
        if isinstance(url, str) and url:
            return url
        if view.get("status") in TERMINAL or time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.5)
    return placed.redirect_url


async def finish_challenges(
    shopper: Shopper, placed: Sequence[PlacedOrder], *, timeout: float = 120.0
) -> None:
    """Press Complete on every challenge, including those that appeared after a 202."""

    async def one(order: PlacedOrder) -> None:
        url = await challenge_of(shopper, order, timeout)
        if url is not None:
            await resolve_challenge(shopper.session, url)

    await asyncio.gather(*(one(p) for p in placed))


@dataclass
class Verdict:
    """Every order of one scenario against the sandbox's truth and the commerce backend."""

    orders: int = 0
    expected_orders: int = 0  # placed through the checkout; fewer rows is a failure
    final: int = 0
    mismatched: list[str] = field(default_factory=list)
    not_final: list[str] = field(default_factory=list)
    duplicate_paid_messages: list[str] = field(default_factory=list)
    duplicate_paid_transitions: list[str] = field(default_factory=list)
    missing_messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.orders < self.expected_orders
            or self.mismatched
            or self.not_final
            or self.duplicate_paid_messages
            or self.duplicate_paid_transitions
            or self.missing_messages
        )

    def summary(self) -> dict[str, int]:
        return {
            "orders": self.orders,
            "expected_orders": self.expected_orders,
            "final": self.final,
            "mismatched": len(self.mismatched),
            "not_final": len(self.not_final),
            "duplicate_order_paid": len(self.duplicate_paid_messages),
            "duplicate_paid_transitions": len(self.duplicate_paid_transitions),
            "missing_messages": len(self.missing_messages),
        }


class Judge:
    """Compares orders with the sandbox; a terminal sandbox state is cached (it cannot change)."""

    def __init__(self, control: SandboxControl, ledger: Ledger, backend: CommerceBackend) -> None:
        self.control = control
        self.ledger = ledger
        self.backend = backend
        self._truth: dict[str, str] = {}

    async def truth(self, execution_id: str) -> str:
        if execution_id in self._truth:
            return self._truth[execution_id]
        status = await self.control.expected_status(execution_id)
        if status in TERMINAL:
            self._truth[execution_id] = status
        return status

    async def verdict(self, tag: str) -> Verdict:
        rows = await self.ledger.orders(tag)
        verdict = Verdict(orders=len(rows))
        for ref, row in sorted(rows.items()):
            expected = await self.truth(row.execution_id) if row.execution_id else "created"
            if row.status in TERMINAL:
                verdict.final += 1
            else:
                verdict.not_final.append(ref)
            if row.status != expected:
                verdict.mismatched.append(f"{ref}:{row.status}!={expected}")
            if row.paid_transitions > 1:
                verdict.duplicate_paid_transitions.append(ref)
            key = ANNOUNCED.get(row.status)
            if key and not self.backend.by_order.get(ref, {}).get(key):
                verdict.missing_messages.append(f"{ref}:{key}")
        verdict.duplicate_paid_messages = self.backend.duplicated(rows)
        return verdict

    async def settle(self, tag: str, *, expected_orders: int, timeout: float) -> Verdict:
        """Wait until every order is final, matches the sandbox and was announced once."""
        deadline = time.monotonic() + timeout
        while True:
            verdict = await self.verdict(tag)
            verdict.expected_orders = expected_orders
            if verdict.ok:
                return verdict
            if time.monotonic() > deadline:
                return verdict
            await asyncio.sleep(1.0)


async def wait_processed(
    ledger: Ledger, deliveries: Sequence[Delivery], *, timeout: float
) -> dict[str, str]:
    """Wait until every accepted delivery is in the inbox; return what the inbox holds."""
    wanted = {d.event_id for d in deliveries if d.accepted}
    deadline = time.monotonic() + timeout
    found: dict[str, str] = {}
    while True:
        try:
            found = await ledger.inbox(wanted)
        except OSError:
            found = {}
        if len(found) >= len(wanted) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(1.0)


def signed_deliveries(
    stack: Stack, placed: Sequence[PlacedOrder], count: int, signatures: set[str]
) -> list[Delivery]:
    """``count`` signed webhooks about ``placed``; their signatures join the log scan's needles."""
    targets = [(p.execution_id, p.reference) for p in placed if p.execution_id]
    deliveries = deliveries_for(stack.config.credentials.webhook_key, targets, count)
    signatures.update(d.signature for d in deliveries)
    return deliveries


async def capture_webhooks(
    stack: Stack, control: SandboxControl, orders: list[tuple[str, str]], signatures: set[str]
) -> tuple[list[PlacedOrder], set[str], list[Delivery]]:
    """Place ``orders`` while the sandbox's webhooks go to a tap instead of the ingress.

    Returns the placed orders, their execution ids and every webhook the sandbox sent about
    them, to be replayed by the scenario. The ingress is the webhook target again afterwards.
    """
    async with running_tap() as tap:
        await control.set_config(webhook_url=tap.url)
        try:
            placed = await shop(stack, orders)
            executions = {p.execution_id for p in placed if p.execution_id}
            await control.wait_deliveries_settled(executions)
        finally:
            await control.set_config(webhook_url=f"{stack.ingress_urls[0]}/webhooks/payrails")
    captured = [c.delivery for c in tap.for_executions(executions)]
    signatures.update(d.signature for d in captured)
    return placed, executions, captured
