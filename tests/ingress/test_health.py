"""GET /healthz, /readyz and /metrics on the webhook app."""

from __future__ import annotations

from tests.ingress.conftest import Client


async def test_healthz_answers_while_the_process_is_alive(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert (await response.json())["status"] == "ok"


async def test_readyz_is_200_while_the_broker_channel_is_open(client: Client) -> None:
    response = await client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["checks"] == {"broker": True}


async def test_metrics_serves_the_webhook_and_broker_metrics(client: Client) -> None:
    response = await client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    assert "recon_webhook_requests_total" in text
    assert "recon_broker_connected 1.0" in text
