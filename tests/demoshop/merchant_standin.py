"""A STAND-IN for the checkout's merchant API, in tests only: POST /merchant/orders as the
contract describes it (Bearer key, 201 new / 200 same terms / 409 other terms / 422, and the
checkout session's URL). It is no checkout: the demo shop's tests use it to see what the shop
sent, and for the answers the real checkout cannot be made to give on demand.

Each test can make it answer otherwise (``answer_with``) or not answer at all (``hang``).
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

API_KEY = "standin-merchant-key"
PROBLEM = "application/problem+json"


def problem(status: int, error: str, detail: str) -> web.Response:
    body = {"type": "about:blank", "title": error, "status": status, "detail": detail}
    body = {**body, "error": error, "message": detail}
    return web.json_response(body, status=status, content_type=PROBLEM)


@dataclass
class MerchantApiStandIn:
    """What it received, and how it answers next."""

    public_url: str = "http://127.0.0.1:1"
    received: list[dict[str, Any]] = field(default_factory=list)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    answer: web.Response | None = None
    hanging: asyncio.Event | None = None

    def answer_with(self, response: web.Response) -> None:
        """Answer every later order with ``response`` instead of creating it."""
        self.answer = response

    def hang(self) -> None:
        """Never answer (until the stand-in stops)."""
        self.hanging = asyncio.Event()

    async def create_order(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            response = problem(401, "unauthorized", "a valid merchant API key is required")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        body = await request.json()
        self.received.append(body)
        if self.hanging is not None:
            await self.hanging.wait()
        if self.answer is not None:
            return self.answer
        return self._created(body)

    def _created(self, body: dict[str, Any]) -> web.Response:
        reference = body.get("orderReference")
        if not isinstance(reference, str) or not isinstance(body.get("amount"), dict):
            return problem(422, "invalid_request", "orderReference and amount are required")
        known = self.orders.get(reference)
        if known is not None and known["terms"] != body:
            return problem(409, "order_conflict", f"order {reference} exists with other terms")
        created = known is None
        if known is None:
            token = secrets.token_urlsafe(16)
            known = {"terms": body, "token": token}
            self.orders[reference] = known
        order = {
            "orderReference": reference,
            "customerReference": body.get("customerReference"),
            "status": "created",
            "amount": body["amount"],
        }
        session = {
            "token": known["token"],
            "expiresAt": "2030-01-01T00:00:00Z",
            "checkoutUrl": f"{self.public_url}/checkout/start?session={known['token']}",
        }
        created_body = {"order": order, "checkoutSession": session}
        return web.json_response(created_body, status=201 if created else 200)

    def release(self) -> None:
        if self.hanging is not None:
            self.hanging.set()


async def start_standin() -> tuple[MerchantApiStandIn, TestServer]:
    """The stand-in, served on a free loopback port."""
    standin = MerchantApiStandIn()
    app = web.Application()
    app.router.add_post("/merchant/orders", standin.create_order)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    standin.public_url = str(server.make_url("")).rstrip("/")
    return standin, server
