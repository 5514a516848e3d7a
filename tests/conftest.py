"""Shared fixtures: real RabbitMQ and PostgreSQL, a fresh database per run, fresh names per test.

Services: AMQP_URL / DATABASE_URL when set, else the local defaults; when those are not reachable
and a Docker engine is, testcontainers starts them. Never a mock.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import psycopg
import pytest
import structlog
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ingress.webhook_app import create_webhook_app
from sandbox.config import SandboxConfig
from sandbox.control_client import SandboxHandle
from sandbox.server import running_sandbox
from shared.db.migrate import upgrade
from shared.db.session import create_engine, create_sessionmaker
from shared.logging import configure_logging
from shared.messaging import Names, connect_robust, declare_topology
from shared.payrails.client import PayrailsClient, open_payrails_client
from tests.ports import free_port
from tests.settings import Settings

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
LOCAL_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
RUN_ID = uuid.uuid4().hex[:8]
_test_counter = itertools.count(1)


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def _docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=20)
    return result.returncode == 0


@dataclass(frozen=True)
class ServiceUrls:
    amqp_url: str
    admin_database_url: str  # a database we may CREATE DATABASE from


@pytest.fixture(scope="session")
def service_urls() -> Iterator[ServiceUrls]:
    amqp = os.environ.get("AMQP_URL", LOCAL_AMQP)
    database = os.environ.get("TEST_ADMIN_DATABASE_URL", LOCAL_DATABASE)
    # A configured URL that does not answer falls back to the local default before Docker.
    if not _reachable(amqp, 5672) and _reachable(LOCAL_AMQP, 5672):
        amqp = LOCAL_AMQP
    if not _reachable(database, 5432) and _reachable(LOCAL_DATABASE, 5432):
        database = LOCAL_DATABASE
    with contextlib.ExitStack() as stack:
        if not _reachable(amqp, 5672) or not _reachable(database, 5432):
            if not _docker_available():
                pytest.exit(
                    f"RabbitMQ ({amqp}) or PostgreSQL ({database}) is not reachable and no Docker "
                    "engine is available: start them (see README) and run again.",
                    returncode=2,
                )
            from testcontainers.postgres import PostgresContainer
            from testcontainers.rabbitmq import RabbitMqContainer

            if not _reachable(amqp, 5672):
                rabbit = stack.enter_context(RabbitMqContainer("rabbitmq:3.13"))
                amqp = (
                    f"amqp://guest:guest@{rabbit.get_container_host_ip()}:"
                    f"{rabbit.get_exposed_port(5672)}/"
                )
            if not _reachable(database, 5432):
                pg = stack.enter_context(PostgresContainer("postgres:16", driver="psycopg"))
                database = pg.get_connection_url()
        yield ServiceUrls(amqp, database)


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture(scope="session")
def database_url(service_urls: ServiceUrls) -> Iterator[str]:
    """A database of this run's own, migrated to head, dropped afterwards."""
    name = f"recon_test_{RUN_ID}"
    admin_sql(service_urls, f'CREATE DATABASE "{name}"')
    parts = urlsplit(service_urls.admin_database_url)
    url = parts._replace(path=f"/{name}").geturl()
    upgrade(url)
    yield url
    admin_sql(service_urls, drop_database(name))


def admin_sql(service_urls: ServiceUrls, *statements: str, database: str | None = None) -> None:
    """Run ``statements`` as the admin, in the admin database or in ``database``."""
    url = urlsplit(_plain(service_urls.admin_database_url))
    if database is not None:
        url = url._replace(path=f"/{database}")
    with psycopg.connect(url.geturl(), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def drop_database(name: str) -> str:
    return f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'


def with_credentials(url: str, user: str, password: str) -> str:
    """``url`` logging in as ``user`` with ``password``."""
    parts = urlsplit(url)
    return parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}").geturl()


@dataclass(frozen=True)
class Role:
    """A PostgreSQL login role of the test's own: no CREATEDB, no grants, a password."""

    name: str
    password: str

    def url(self, database_url: str, database: str) -> str:
        """``database_url`` logging in as this role to ``database``."""
        parts = urlsplit(with_credentials(database_url, self.name, self.password))
        return parts._replace(path=f"/{database}").geturl()


@pytest.fixture
def unprivileged_role(service_urls: ServiceUrls) -> Iterator[Role]:
    """A role that may log in and nothing more; dropped afterwards."""
    role = Role(f"limited_{uuid.uuid4().hex[:8]}", f"pw{uuid.uuid4().hex}")
    admin_sql(
        service_urls, f"CREATE ROLE \"{role.name}\" LOGIN NOCREATEDB PASSWORD '{role.password}'"
    )
    yield role
    admin_sql(service_urls, f'DROP ROLE IF EXISTS "{role.name}"')


@pytest.fixture
def foreign_database(service_urls: ServiceUrls) -> Iterator[str]:
    """An empty database owned by the admin, where no other role may create tables."""
    name = f"recon_foreign_{uuid.uuid4().hex[:8]}"
    admin_sql(service_urls, f'CREATE DATABASE "{name}"')
    # PostgreSQL 15's default, made explicit for older servers
    admin_sql(service_urls, "REVOKE CREATE ON SCHEMA public FROM PUBLIC", database=name)
    yield name
    admin_sql(service_urls, drop_database(name))


@pytest.fixture(scope="session")
def base_env(service_urls: ServiceUrls, database_url: str) -> dict[str, str]:
    """Environment for Settings.from_env and for subprocesses: this run's services and names."""
    return {
        "DATABASE_URL": database_url,
        "AMQP_URL": service_urls.amqp_url,
        "AMQP_NAME_PREFIX": f"t{RUN_ID}.",
        "WORKER_RETRY_DELAYS_SECONDS": "0.2,0.5,1",
        "AMQP_PUBLISH_TIMEOUT_SECONDS": "2",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "DATABASE_POOL_SIZE": "5",
        # Admin servers (readiness, metrics) on loopback ports of the kernel's choosing, so no two
        # apps or test runs ever collide on the defaults; tests that call them set their own.
        "ADMIN_HOST": "127.0.0.1",
        "WEBHOOK_ADMIN_PORT": "0",
        "CHECKOUT_ADMIN_PORT": "0",
    }


@pytest.fixture
def settings(base_env: dict[str, str]) -> Settings:
    """Settings with names of this test's own: no two tests share a queue."""
    env = {**base_env, "AMQP_NAME_PREFIX": f"t{RUN_ID}-{next(_test_counter)}."}
    return Settings.from_env(env)


@pytest.fixture(scope="session")
async def amqp_connection(service_urls: ServiceUrls) -> AsyncIterator[AbstractRobustConnection]:
    connection = await connect_robust(
        service_urls.amqp_url, client_properties={"connection_name": f"tests-{RUN_ID}"}
    )
    yield connection
    await connection.close()


async def delete_topology(connection: AbstractRobustConnection, settings: Settings) -> None:
    """Remove every queue and exchange ``declare_topology`` made for these settings."""
    names = Names.from_settings(settings)
    queues = [
        *names.work_queues,  # every consumed queue, so a new one is never left behind
        names.dead_letters_queue,
        names.orders_unrouted_queue,
        *(
            names.retry_queue(source, delay)
            for source in names.work_queues
            for delay in settings.worker_retry_delays_seconds
        ),
    ]
    exchanges = [
        names.webhooks_exchange,
        names.commands_exchange,
        names.orders_exchange,
        names.orders_unrouted_exchange,
    ]
    async with connection.channel() as channel:
        for queue in queues:
            await channel.queue_delete(queue)
        for exchange in exchanges:
            await channel.exchange_delete(exchange)


@pytest.fixture
async def topology(
    settings: Settings, amqp_connection: AbstractRobustConnection
) -> AsyncIterator[Names]:
    """This test's topology, declared before and deleted after."""
    async with amqp_connection.channel() as channel:
        names = await declare_topology(channel, settings)
    yield names
    await delete_topology(amqp_connection, settings)


@pytest.fixture(scope="session")
async def engine(database_url: str, base_env: dict[str, str]) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(Settings.from_env(base_env))
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


def sandbox_config_for(settings: Settings) -> SandboxConfig:
    """A fast sandbox sharing the settings' credentials; webhooks off until a test sets a URL.

    Capture is manual here, so an authorize is the execution's only action unless a test
    captures; tests of Payrails' default instant capture turn it on (``capture_mode``).
    """
    return SandboxConfig(
        client_id=settings.payrails_client_id,
        client_secret=settings.payrails_client_secret,
        workspace_id=settings.payrails_workspace_id,
        webhook_keys=settings.payrails_webhook_keys,
        webhook_url="",
        webhook_retry_schedule_seconds=(0.05, 0.1, 0.2, 0.4),
        webhook_timeout_seconds=2.0,
        max_wait_seconds=5.0,
        action_delay_seconds=0.05,
        capture_mode="manual",
    )


@pytest.fixture
async def sandbox(settings: Settings) -> AsyncIterator[SandboxHandle]:
    """The Payrails sandbox, in-process on a free 127.0.0.1 port, with its control helpers."""
    async with (
        running_sandbox(sandbox_config_for(settings)) as running,
        aiohttp.ClientSession() as session,
    ):
        yield SandboxHandle(running, session)


@pytest.fixture
async def payrails(settings: Settings, sandbox: SandboxHandle) -> AsyncIterator[PayrailsClient]:
    """A PayrailsClient pointed at this test's sandbox, with short timeouts and backoff."""
    fast = settings.model_copy(
        update={
            "payrails_base_url": sandbox.url,
            "payrails_timeout_seconds": 5.0,
            "payrails_retry_backoff_seconds": 0.02,
            "payrails_long_poll_seconds": 5.0,
        }
    )
    async with open_payrails_client(fast) as client:
        yield client


@pytest.fixture
async def webhook_ingress(
    settings: Settings, topology: Names, sandbox: SandboxHandle
) -> AsyncIterator[str]:
    """The real webhook ingress in this process; the sandbox delivers its webhooks to it."""
    runner = web.AppRunner(create_webhook_app(settings), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/webhooks/payrails"
    await sandbox.set_config(webhook_url=url)
    yield url
    await runner.cleanup()


class Output(io.StringIO):
    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.getvalue().splitlines()]


@pytest.fixture
def json_logs() -> Iterator[Output]:
    """Logging configured as the processes do it, into a buffer read back as JSON lines."""
    out = Output()
    structlog.reset_defaults()
    configure_logging("INFO", json=True, stream=out)
    yield out
    structlog.reset_defaults()
    logging.basicConfig(force=True, handlers=[logging.NullHandler()])
