"""``python -m worker`` as a real process: SIGTERM mid-stream loses nothing and exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sandbox.control_client import SandboxHandle
from shared.config import Settings
from tests.ports import free_port
from tests.worker.conftest import FRICTIONLESS, Broker, Shop, order_status, wait_until

ROOT = Path(__file__).resolve().parents[2]


async def test_sigterm_finishes_or_requeues_every_message_and_exits_zero(
    base_env: dict[str, str],
    settings: Settings,
    sandbox: SandboxHandle,
    shop: Shop,
    broker: Broker,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    paid = [await shop.pay(FRICTIONLESS) for _ in range(3)]
    bodies = [(await shop.bodies(execution_id, 1))[0] for _, execution_id in paid]
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        **base_env,
        "AMQP_NAME_PREFIX": settings.amqp_name_prefix,
        "PAYRAILS_BASE_URL": sandbox.url,
        "WORKER_HOST": "127.0.0.1",
        "WORKER_METRICS_PORT": str(port),
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "worker",
            "--only",
            "events",
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with aiohttp.ClientSession() as http:

                async def healthy() -> bool:
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                            return response.status == 200
                    except aiohttp.ClientConnectionError:
                        return False

                await wait_until(healthy, timeout=30)
            await broker.publish_event(bodies[0])

            async def consuming() -> bool:
                return await order_status(sessions, paid[0][0]) == "paid"

            await wait_until(consuming)
            for body in bodies[1:]:
                await broker.publish_event(body)
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), timeout=30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    assert code == 0, log.read_text()[-2000:]
    waiting = {
        json.loads(m.body)["details"]["execution"]["merchantReference"]
        for m in await broker.drain(broker.names.events_queue)
    }
    for reference, _ in paid:
        assert reference in waiting or await order_status(sessions, reference) == "paid"
