"""Fixtures for the fault and load suite: one stack of real processes for the whole session.

The short sizes run in ``make test``; CHAOS_FULL=1 (``make chaos``) runs the full sizes.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import aiohttp
import psycopg
import pytest

from shared.db.migrate import upgrade
from shared.messaging import connect_robust
from tests.cluster.pg_replica import PgReplicaPair, running_pg_replica, server_bindir
from tests.conftest import ServiceUrls, delete_topology
from tests.e2e.cluster import (  # noqa: F401 (fixtures of the scenarios on a RabbitMQ cluster)
    cluster_backend,
    cluster_database_url,
    cluster_scenario,
    cluster_stack,
    rabbit_cluster,
)
from tests.e2e.counting import CommerceBackend, Ledger
from tests.e2e.harness import ARTIFACTS, SandboxControl, Stack, StackConfig
from tests.e2e.pg_failover import DirectStack
from tests.settings import Settings

RUN = secrets.token_hex(4)


@pytest.fixture(scope="session")
def run_dir() -> Path:
    path = ARTIFACTS / RUN
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="session")
def e2e_database_url(service_urls: ServiceUrls) -> Iterator[str]:
    """A database of the suite's own, migrated to head, dropped afterwards."""
    name = f"recon_e2e_{RUN}"
    admin = service_urls.admin_database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlsplit(service_urls.admin_database_url)._replace(path=f"/{name}").geturl()
    upgrade(url)
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def stack(
    service_urls: ServiceUrls, e2e_database_url: str, run_dir: Path
) -> AsyncIterator[Stack]:
    config = StackConfig(
        run_dir=run_dir,
        database_url=e2e_database_url,
        admin_database_url=service_urls.admin_database_url,
        amqp_url=service_urls.amqp_url,
        prefix=f"e2e{RUN}.",
    )
    the_stack = Stack(config)
    try:
        await the_stack.start()
        yield the_stack
    finally:
        codes = await the_stack.stop()
        print(f"[e2e] stack stopped: exit codes {codes}", flush=True)
        connection = await connect_robust(service_urls.amqp_url)
        try:
            await delete_topology(connection, Settings.from_env(the_stack.env()))
        finally:
            await connection.close()


@pytest.fixture(scope="session")
async def backend(stack: Stack) -> AsyncIterator[CommerceBackend]:
    """The commerce backend that counts ``orders`` messages, bound for the whole session."""
    consumer = CommerceBackend(stack.config.amqp_url, Settings.from_env(stack.env()))
    await consumer.start()
    yield consumer
    await consumer.close()


@pytest.fixture(scope="session")
def ledger(e2e_database_url: str) -> Ledger:
    return Ledger(e2e_database_url)


@pytest.fixture
async def control(stack: Stack) -> AsyncIterator[SandboxControl]:
    """The sandbox's control API; faults are cleared and extra processes stopped afterwards."""
    async with aiohttp.ClientSession() as session:
        sandbox = SandboxControl(stack, session)
        try:
            yield sandbox
        finally:
            await sandbox.clear_faults()
            await stack.remove_extra()


@pytest.fixture
def tag() -> str:
    """A prefix for this test's order references, so counts never mix scenarios."""
    return f"e2e-{secrets.token_hex(3)}-"


@pytest.fixture(scope="session")
def needles() -> dict[str, set[str]]:
    """Exact values the log scan looks for, by kind; scenarios add the signatures they send."""
    return {"signature": set()}


class Scenario(NamedTuple):
    """What a scenario works with, unpacked in one line at its top."""

    stack: Stack
    control: SandboxControl
    ledger: Ledger
    backend: CommerceBackend
    tag: str
    needles: dict[str, set[str]]


@pytest.fixture
def scenario(
    stack: Stack,
    control: SandboxControl,
    ledger: Ledger,
    backend: CommerceBackend,
    tag: str,
    needles: dict[str, set[str]],
) -> Scenario:
    return Scenario(stack, control, ledger, backend, tag, needles)


# ---------------------------------------------------------------- scenario 13: PostgreSQL failover


@pytest.fixture(scope="session")
def pg_replica(run_dir: Path) -> Iterator[PgReplicaPair]:
    """A PostgreSQL primary and streaming standby of the suite's own (never the shared server)."""
    if server_bindir() is None:
        pytest.skip("the PostgreSQL server tools (initdb, pg_ctl) are not installed")
    with running_pg_replica(keep_logs=run_dir) as pair:
        print(f"[e2e] postgresql primary + standby up in {pair.seconds_to_start:.1f}s", flush=True)
        yield pair


@pytest.fixture(scope="session")
async def replica_stack(
    service_urls: ServiceUrls, pg_replica: PgReplicaPair, run_dir: Path
) -> AsyncIterator[Stack]:
    """The stack on the pair's multi-host URL and the shared RabbitMQ, prefixed of its own.

    Its database is created and migrated through the same URL, so on the primary.
    """
    name = f"recon_e2e_{RUN}"
    with psycopg.connect(pg_replica.url("postgres", driver="postgresql"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    upgrade(pg_replica.url(name))
    config = StackConfig(
        run_dir=run_dir / "pg-replica",
        database_url=pg_replica.url(name),
        admin_database_url=pg_replica.url("postgres"),
        amqp_url=service_urls.amqp_url,
        prefix=f"e2e{RUN}pg.",
    )
    config.run_dir.mkdir()
    the_stack = DirectStack(config)
    try:
        await the_stack.start(ingresses=2, workers=2)
        yield the_stack
    finally:
        codes = await the_stack.stop()
        print(f"[e2e] replica stack stopped: exit codes {codes}", flush=True)
        connection = await connect_robust(service_urls.amqp_url)
        try:
            await delete_topology(connection, Settings.from_env(the_stack.env()))
        finally:
            await connection.close()


@pytest.fixture
async def replica_scenario(
    replica_stack: Stack, tag: str, needles: dict[str, set[str]]
) -> AsyncIterator[Scenario]:
    """``scenario`` on the replica stack: its own sandbox control, ledger and commerce backend."""
    backend = CommerceBackend(replica_stack.config.amqp_url, Settings.from_env(replica_stack.env()))
    await backend.start()
    try:
        async with aiohttp.ClientSession() as session:
            control = SandboxControl(replica_stack, session)
            ledger = Ledger(replica_stack.config.database_url)
            yield Scenario(replica_stack, control, ledger, backend, tag, needles)
    finally:
        await backend.close()
