"""``python -m worker`` as a real process: SIGTERM mid-stream loses nothing and exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sandbox.control_client import SandboxHandle
from tests.ports import free_port
from tests.settings import Settings
from tests.waiting import wait_until
from tests.worker.conftest import (
    FRICTIONLESS,
    QueueDriver,
    Shop,
    order_status,
    running_worker,
)
from worker.deps import Deps

ROOT = Path(__file__).resolve().parents[2]


def worker_env(
    base_env: Mapping[str, str], settings: Settings, sandbox: SandboxHandle, port: int
) -> dict[str, str]:
    """The environment of a worker process on this test's names, against this test's sandbox."""
    return {
        "PATH": os.environ.get("PATH", ""),
        **base_env,
        "AMQP_NAME_PREFIX": settings.amqp_name_prefix,
        "PAYRAILS_BASE_URL": sandbox.url,
        "ADMIN_HOST": "127.0.0.1",
        "WORKER_METRICS_PORT": str(port),
    }


@contextlib.asynccontextmanager
async def events_worker(
    env: Mapping[str, str], port: int, log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m worker --only events``, healthy; killed on exit if it is still running."""
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "worker",
            "--only",
            "events",
            cwd=ROOT,
            env=dict(env),
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
            yield process
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


def log_records(log: Path) -> list[dict[str, Any]]:
    """The JSON log lines the worker wrote (anything else is skipped)."""
    records: list[dict[str, Any]] = []
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records


async def test_sigterm_finishes_or_requeues_every_message_and_exits_zero(
    base_env: dict[str, str],
    settings: Settings,
    sandbox: SandboxHandle,
    shop: Shop,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    paid = [await shop.pay(FRICTIONLESS) for _ in range(3)]
    bodies = [(await shop.bodies(execution_id, 1))[0] for _, execution_id in paid]
    port = free_port()
    log = tmp_path / "worker.log"
    async with events_worker(worker_env(base_env, settings, sandbox, port), port, log) as process:
        await broker.publish_event(bodies[0])

        async def consuming() -> bool:
            return await order_status(sessions, paid[0][0]) == "paid"

        await wait_until(consuming)
        for body in bodies[1:]:
            await broker.publish_event(body)
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=30)

    assert code == 0, log.read_text()[-2000:]
    waiting = {
        json.loads(m.body)["details"]["execution"]["merchantReference"]
        for m in await broker.drain(broker.names.events_queue)
    }
    for reference, _ in paid:
        assert reference in waiting or await order_status(sessions, reference) == "paid"


async def test_sigterm_with_events_in_flight_nacks_them_and_a_new_worker_finishes_them(
    base_env: dict[str, str],
    settings: Settings,
    sandbox: SandboxHandle,
    shop: Shop,
    broker: QueueDriver,
    sandbox_deps: Deps,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    paid = [await shop.pay(FRICTIONLESS) for _ in range(3)]
    references = {reference for reference, _ in paid}
    bodies = [(await shop.bodies(execution_id, 1))[0] for _, execution_id in paid]
    # Every re-poll hangs far beyond the shutdown grace, and the client waits it out: the
    # worker holds all three events, unacked, when SIGTERM arrives.
    await sandbox.set_faults(
        {"endpoints": {"get_execution": {"hang_rate": 1, "hang_seconds": 300}}}
    )
    port = free_port()
    env = {
        **worker_env(base_env, settings, sandbox, port),
        "WORKER_SHUTDOWN_GRACE_SECONDS": "1",
        "PAYRAILS_TIMEOUT_SECONDS": "300",
    }
    log = tmp_path / "worker.log"
    async with events_worker(env, port, log) as process:
        for body in bodies:
            await broker.publish_event(body)

        async def all_in_flight() -> bool:
            faults: dict[str, int] = (await sandbox.stats())["faultsInjected"]
            return faults.get("get_execution.hang", 0) == len(bodies)

        await wait_until(all_in_flight, timeout=30)
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=60)

    assert code == 0, log.read_text()[-2000:]
    records = log_records(log)
    [stopped] = [
        r
        for r in records
        if r.get("event") == "consumer.stopped" and r.get("queue") == broker.names.events_queue
    ]
    assert stopped["requeued"] == len(bodies)
    assert not [r for r in records if r.get("event") == "event.nack_failed"]
    assert {await order_status(sessions, r) for r in references} == {"authorizing"}

    await sandbox.clear_faults()
    async with running_worker(sandbox_deps):

        async def all_paid() -> bool:
            return {await order_status(sessions, r) for r in references} == {"paid"}

        await wait_until(all_paid, timeout=30)
        messages = await broker.settled_messages_for(sessions, references)

    assert sorted((m["orderReference"], m["_routing_key"]) for m in messages) == sorted(
        (r, "order.paid") for r in references
    )
