"""``python -m worker`` wiring: components, the health side-port, and a clean stop."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import InboxEntry
from shared.events import derive_event_id
from shared.messaging import Names
from tests.ports import free_port
from tests.settings import Settings
from tests.waiting import wait_until
from tests.worker.conftest import QueueDriver, webhook_body
from worker.__main__ import COMPONENTS, parse_components, run
from worker.health import create_health_app


def test_only_flag_selects_a_subset_and_refuses_unknown_names() -> None:
    assert parse_components(None) == COMPONENTS
    assert parse_components("events,outbox") == ("events", "outbox")
    with pytest.raises(ValueError, match="unknown components"):
        parse_components("events,nope")


async def test_worker_runs_every_component_serves_healthz_and_stops_cleanly(
    settings: Settings,
    topology: Names,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    port = free_port()
    local = settings.model_copy(update={"admin_host": "127.0.0.1", "worker_metrics_port": port})
    stop = asyncio.Event()
    task = asyncio.create_task(run(local, COMPONENTS, stop))
    body = webhook_body("executionCreated", str(uuid.uuid4()), "ord_main")
    try:
        async with aiohttp.ClientSession() as http:

            async def healthy() -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await wait_until(healthy)
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert "recon_events_processed_total" in await response.text()
        await broker.publish_event(body)

        async def recorded() -> bool:
            async with sessions() as session:
                return await session.get(InboxEntry, derive_event_id(body)) is not None

        await wait_until(recorded)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def test_healthz_answers_503_naming_the_failing_dependency() -> None:
    async def up() -> bool:
        return True

    async def down() -> bool:
        raise ConnectionError("database is gone")

    app = create_health_app({"amqp": up, "database": down})
    port = free_port()
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/healthz") as response,
        ):
            assert response.status == 503
            assert (await response.json())["checks"] == {"amqp": True, "database": False}
    finally:
        await runner.cleanup()
