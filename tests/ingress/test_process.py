"""``python -m ingress webhooks`` as a real process: serving, its log lines, and SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from ingress.signature import sign
from shared.messaging import Names
from tests.ingress.conftest import EACH_PUBLISHER, through, webhook_body
from tests.ingress.proxy import TcpProxy
from tests.ports import free_port
from tests.settings import Settings

pytestmark = EACH_PUBLISHER


@dataclass
class IngressProcess:
    process: asyncio.subprocess.Process
    port: int

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/payrails"

    async def stop(self) -> list[dict[str, Any]]:
        """SIGTERM, wait for exit, return the JSON log lines."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        stdout, _ = await asyncio.wait_for(self.process.communicate(), 30)
        return [json.loads(line) for line in stdout.decode().splitlines() if line.startswith("{")]


async def wait_until_ready(port: int) -> None:
    """Poll /readyz on the admin port: a child process has no event to wait on."""
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("the ingress never became ready")


@pytest.fixture
async def ingress_process(
    base_env: dict[str, str], ingress_settings: Settings, topology: Names, proxy: TcpProxy
) -> AsyncIterator[IngressProcess]:
    """The ingress in its own process, reaching RabbitMQ through the test's proxy."""
    await proxy.start()
    port, admin_port = free_port(), free_port()
    env = {
        **os.environ,
        **base_env,
        "AMQP_URL": through(ingress_settings, proxy.port).amqp_url.reveal(),
        "AMQP_NAME_PREFIX": ingress_settings.amqp_name_prefix,
        "WEBHOOK_HOST": "127.0.0.1",
        "WEBHOOK_PORT": str(port),
        "WEBHOOK_ADMIN_PORT": str(admin_port),
        "LOG_FORMAT": "json",
        "WEBHOOK_PUBLISHER": ingress_settings.webhook_publisher,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingress", "webhooks", env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        await wait_until_ready(admin_port)
        yield IngressProcess(process, port)
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()


async def post(url: str, body: bytes, signature: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers={"X-Signature": signature}) as response,
    ):
        return response.status


async def refused_while(port: int, pending: asyncio.Task[int]) -> bool:
    """True once a new connection is refused while ``pending`` is still in flight."""
    while not pending.done():
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except (ConnectionRefusedError, ConnectionResetError):  # reset: closed mid-handshake
            return not pending.done()
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.02)
    return False


async def test_after_sigterm_new_connections_are_refused_while_in_flight_ones_finish(
    ingress_process: IngressProcess, ingress_settings: Settings, proxy: TcpProxy
) -> None:
    body = webhook_body()
    signature = sign(body, ingress_settings.payrails_webhook_keys[0])
    proxy.slow_down(0.6)  # each way; the confirm still beats the 2 s publish timeout
    in_flight = asyncio.create_task(post(ingress_process.webhook_url, body, signature))
    await asyncio.wait_for(proxy.upstream_traffic.wait(), 10)

    ingress_process.process.send_signal(signal.SIGTERM)
    refused = await refused_while(ingress_process.port, in_flight)
    await asyncio.wait_for(ingress_process.process.communicate(), 30)  # no second SIGTERM

    assert refused
    assert ingress_process.process.returncode == 0
    assert await in_flight == 200


async def test_sigterm_lets_the_in_flight_publish_finish_then_closes_the_broker(
    ingress_process: IngressProcess, ingress_settings: Settings, proxy: TcpProxy
) -> None:
    body = webhook_body()
    signature = sign(body, ingress_settings.payrails_webhook_keys[0])
    proxy.slow_down(0.5)  # the confirm takes a while: the request is in flight
    in_flight = asyncio.create_task(post(ingress_process.webhook_url, body, signature))
    await asyncio.wait_for(proxy.upstream_traffic.wait(), 10)  # the publish has left

    lines = await ingress_process.stop()

    assert await in_flight == 200
    assert ingress_process.process.returncode == 0
    events = [line["event"] for line in lines]
    assert events.index("webhook.handled") < events.index("broker.closed")


async def test_each_request_logs_one_line_with_event_id_outcome_and_no_signature(
    ingress_process: IngressProcess, ingress_settings: Settings
) -> None:
    body = webhook_body()
    signature = sign(body, ingress_settings.payrails_webhook_keys[0])
    assert await post(ingress_process.webhook_url, body, signature) == 200
    assert await post(ingress_process.webhook_url, body, "v1,!!!") == 401

    lines = await ingress_process.stop()

    handled = [line for line in lines if line["event"] == "webhook.handled"]
    assert len(handled) == 2
    accepted, refused = handled
    assert accepted["outcome"] == "accepted"
    assert accepted["webhook_event"] == "executionActionCompleted"
    assert accepted["event_id"].startswith("drv_")
    assert accepted["execution_id"] == "exec-1"
    assert accepted["duration_ms"] >= 0
    assert refused["outcome"] == "bad_signature"
    everything = json.dumps(lines)
    assert signature not in everything
    assert "sandbox-webhook-secret" not in everything
