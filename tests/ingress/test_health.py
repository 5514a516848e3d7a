"""GET /healthz on the public port; /healthz, /readyz and /metrics on the admin port."""

from __future__ import annotations

import json

from tests.ingress.conftest import EACH_PUBLISHER, Client, admin_get

pytestmark = EACH_PUBLISHER


async def test_healthz_answers_while_the_process_is_alive(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert (await response.json())["status"] == "ok"


async def test_the_admin_port_answers_healthz_too(client: Client) -> None:
    status, body = await admin_get(client, "/healthz")
    assert status == 200
    assert json.loads(body)["status"] == "ok"


async def test_readyz_is_200_while_the_broker_channel_is_open(client: Client) -> None:
    status, body = await admin_get(client, "/readyz")
    assert status == 200
    assert json.loads(body)["checks"] == {"broker": True}


async def test_metrics_serves_the_webhook_and_broker_metrics(client: Client) -> None:
    status, text = await admin_get(client, "/metrics")
    assert status == 200
    assert "recon_webhook_requests_total" in text
    assert "recon_broker_connected 1.0" in text


async def test_readyz_and_metrics_are_not_served_on_the_public_port(client: Client) -> None:
    for path in ("/readyz", "/metrics"):
        response = await client.get(path)
        assert response.status == 404, path
