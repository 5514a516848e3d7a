"""Ops fixtures: worker dependencies on the sandbox, a shop whose webhooks are dropped, and
``recon`` run against this test's names."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection
from click.testing import CliRunner, Result
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sandbox.control_client import SandboxHandle
from shared.messaging import Names, open_channel
from shared.payrails.client import PayrailsClient
from tests.ops.shop import STUCK_AFTER, Shop
from tests.settings import Settings
from worker.cli import cli
from worker.deps import Deps

Invoke = Callable[..., Coroutine[Any, Any, Result]]


@pytest.fixture
async def ops_deps(
    settings: Settings,
    topology: Names,
    sessions: async_sessionmaker[AsyncSession],
    sandbox: SandboxHandle,
    payrails: PayrailsClient,
    amqp_connection: AbstractRobustConnection,
) -> AsyncIterator[Deps]:
    """Worker dependencies with Payrails at this test's sandbox and a month as the threshold."""
    tuned = settings.model_copy(
        update={
            "payrails_base_url": sandbox.url,
            "sweeper_stuck_after_seconds": STUCK_AFTER.total_seconds(),
        }
    )
    channel = await open_channel(amqp_connection)
    yield Deps(tuned, topology, sessions, payrails, channel)
    await channel.close()


@pytest.fixture
async def shop(
    payrails: PayrailsClient, sandbox: SandboxHandle, sessions: async_sessionmaker[AsyncSession]
) -> Shop:
    """A shop whose webhooks the sandbox drops, every one of them."""
    await sandbox.set_config(webhook_url="http://127.0.0.1:9/webhooks/payrails")
    await sandbox.set_faults({"webhooks": {"drop_rate": 1}})
    return Shop(payrails, sandbox, sessions)


@pytest.fixture
def recon(base_env: dict[str, str], settings: Settings, sandbox: SandboxHandle) -> Invoke:
    """Run ``recon ARGS`` with this test's names and sandbox; returns click's Result.

    The command runs through click's CliRunner in a thread: the CLI runs its own event loop
    there, while the test's loop keeps serving the in-process sandbox.
    """
    env = {
        **base_env,
        "AMQP_NAME_PREFIX": settings.amqp_name_prefix,
        "PAYRAILS_BASE_URL": sandbox.url,
    }

    async def invoke(*args: str, stdin: str | None = None) -> Result:
        runner = CliRunner()
        return await asyncio.to_thread(runner.invoke, cli, list(args), input=stdin, env=env)

    return invoke
