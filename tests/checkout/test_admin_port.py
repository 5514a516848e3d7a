"""The checkout's readiness and metrics live on its admin port, not on the public one."""

from __future__ import annotations

import json

from aiohttp import web
from aiohttp.test_utils import TestClient

from ingress.health import ADMIN_RUNNER

Client = TestClient[web.Request, web.Application]


async def admin_get(checkout: Client, path: str) -> tuple[int, str]:
    host, port = checkout.app[ADMIN_RUNNER].addresses[0][:2]
    async with checkout.session.get(f"http://{host}:{port}{path}") as response:
        return response.status, await response.text()


async def test_readyz_and_metrics_are_not_served_on_the_public_port(checkout: Client) -> None:
    for path in ("/readyz", "/metrics"):
        response = await checkout.get(path)
        assert response.status == 404, path


async def test_readyz_on_the_admin_port_checks_the_broker_and_the_database(
    checkout: Client,
) -> None:
    status, body = await admin_get(checkout, "/readyz")
    assert status == 200
    assert json.loads(body)["checks"] == {"broker": True, "database": True}


async def test_metrics_on_the_admin_port_serve_the_checkout_metrics(checkout: Client) -> None:
    status, text = await admin_get(checkout, "/metrics")
    assert status == 200
    assert "recon_checkout_requests_total" in text


async def test_healthz_stays_on_the_public_port(checkout: Client) -> None:
    response = await checkout.get("/healthz")
    assert response.status == 200
