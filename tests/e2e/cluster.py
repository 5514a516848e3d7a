"""Fixtures for the scenarios on a three-node RabbitMQ cluster (imported by ``conftest``).

The cluster, its stack and its database are the session's own: the processes reach RabbitMQ
only through the cluster's load balancer, and PostgreSQL in a database of their own, so the
shared broker is never used and the session's other stack never sees these orders (its worker
would otherwise relay this stack's outbox to the shared broker).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import aiohttp
import psycopg
import pytest

from shared.db.migrate import upgrade
from tests.cluster.rabbit_cluster import RabbitCluster, running_cluster
from tests.conftest import ServiceUrls
from tests.e2e.counting import CommerceBackend, Ledger
from tests.e2e.harness import SandboxControl, Stack, StackConfig
from tests.settings import Settings

INGRESSES = 2
WORKERS = 2


class ClusterScenario(NamedTuple):
    """What a cluster scenario works with, unpacked in one line at its top."""

    stack: Stack
    cluster: RabbitCluster
    control: SandboxControl
    ledger: Ledger
    backend: CommerceBackend
    tag: str
    needles: dict[str, set[str]]


@pytest.fixture(scope="session")
def rabbit_cluster(
    tmp_path_factory: pytest.TempPathFactory, run_dir: Path
) -> Iterator[RabbitCluster]:
    """Three RabbitMQ nodes and HAProxy, started once, stopped and removed at the end; the
    node names carry the run's id (``run_dir``'s name)."""
    missing = [t for t in ("rabbitmq-server", "rabbitmqctl", "haproxy") if not shutil.which(t)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (scripts/test-tools.sh installs them)")
    with running_cluster(tmp_path_factory.mktemp("rabbit-cluster"), run_dir.name) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def cluster_database_url(service_urls: ServiceUrls, run_dir: Path) -> Iterator[str]:
    """A database of the cluster stack's own, migrated to head, dropped afterwards."""
    name = f"recon_e2e_{run_dir.name}_cluster"
    admin = service_urls.admin_database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlsplit(service_urls.admin_database_url)._replace(path=f"/{name}").geturl()
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def cluster_stack(
    rabbit_cluster: RabbitCluster,
    service_urls: ServiceUrls,
    cluster_database_url: str,
    run_dir: Path,
) -> AsyncIterator[Stack]:
    """Sandbox, checkout, two webhook ingresses and two workers on the cluster's URL."""
    directory = run_dir / "cluster"
    directory.mkdir(exist_ok=True)
    config = StackConfig(
        run_dir=directory,
        database_url=cluster_database_url,
        admin_database_url=service_urls.admin_database_url,
        amqp_url=rabbit_cluster.url,
        prefix=f"e2ec{run_dir.name}.",
        outage_mode="direct",
    )
    the_stack = Stack(config)
    started = time.monotonic()
    try:
        await the_stack.start(ingresses=INGRESSES, workers=WORKERS)
        print(f"[cluster] stack up in {time.monotonic() - started:.1f} s", flush=True)
        yield the_stack
    finally:
        codes = await the_stack.stop()
        print(f"[cluster] stack stopped: exit codes {codes}", flush=True)


@pytest.fixture(scope="session")
async def cluster_backend(cluster_stack: Stack) -> AsyncIterator[CommerceBackend]:
    """The commerce backend counting ``orders`` messages, on the cluster."""
    consumer = CommerceBackend(
        cluster_stack.config.amqp_url, Settings.from_env(cluster_stack.env())
    )
    await consumer.start()
    yield consumer
    await consumer.close()


@pytest.fixture
async def cluster_scenario(
    cluster_stack: Stack,
    rabbit_cluster: RabbitCluster,
    cluster_backend: CommerceBackend,
    cluster_database_url: str,
    tag: str,
    needles: dict[str, set[str]],
) -> AsyncIterator[ClusterScenario]:
    async with aiohttp.ClientSession() as session:
        control = SandboxControl(cluster_stack, session)
        ledger = Ledger(cluster_database_url)
        try:
            yield ClusterScenario(
                cluster_stack, rabbit_cluster, control, ledger, cluster_backend, tag, needles
            )
        finally:
            await control.clear_faults()
