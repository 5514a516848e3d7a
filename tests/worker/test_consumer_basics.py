"""The events consumer on the real broker and database, for messages that need no re-poll."""

from __future__ import annotations

import json
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import InboxEntry
from shared.events import derive_event_id
from shared.messaging import HDR_REASON
from tests.waiting import wait_until
from tests.worker.conftest import QueueDriver, processed, running_worker, webhook_body
from worker.deps import Deps


async def test_unparseable_message_goes_to_dead_letters_at_once(
    deps: Deps, broker: QueueDriver
) -> None:
    async with running_worker(deps, relay=False):
        await broker.publish_event(b"{not json")
        [dead] = await broker.wait_for(deps.names.dead_letters_queue, 1)

    assert dead.body == b"{not json"
    assert dead.headers[HDR_REASON] == "invalid_payload"
    assert await broker.ready(deps.names.events_queue) == 0


async def test_other_events_are_recorded_and_acked_as_ignored(
    deps: Deps,
    broker: QueueDriver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    body = webhook_body("executionCreated", str(uuid.uuid4()), "ord_ignored")
    event_id = derive_event_id(body)
    before = processed("executionCreated", "ignored")
    duplicates = processed("executionCreated", "duplicate")

    async with running_worker(deps, relay=False):
        await broker.publish_event(body)
        await broker.publish_event(json.dumps(body).encode())

        async def recorded() -> bool:
            return processed("executionCreated", "duplicate") >= duplicates + 1 and (
                processed("executionCreated", "ignored") >= before + 1
            )

        await wait_until(recorded)

    async with sessions() as session:
        row = await session.get(InboxEntry, event_id)
    assert row is not None
    assert row.outcome == "ignored"
