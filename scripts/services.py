"""PostgreSQL and RabbitMQ for ``make run``: reach them, else start them, else say how.

Order of attempts when a service is not reachable: a locally installed server (Debian's
``pg_ctlcluster``, ``rabbitmq-server -detached``), then Docker compose, then instructions.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from scripts.service_messages import (
    LOGIN_REFUSED,
    postgres_login_refused,
    postgres_may_not_create,
    postgres_may_not_migrate,
    postgres_not_ready,
    rabbitmq_login_refused,
    rabbitmq_not_ready,
    rabbitmq_vhost_refused,
    redact,
    server_reason,
)
from shared.backoff import Backoff
from shared.config import BrokerSettings, DatabaseUrlSettings, TopologySettings
from shared.db.migrate import upgrade
from shared.messaging import Names, connect, declare_topology

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = "deploy/compose.yaml"
POSTGRES_CLUSTERS = Path("/etc/postgresql")
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
START_TIMEOUT_SECONDS = 60.0
READY_TIMEOUT_SECONDS = 30.0
# Between checks of a server that is starting: soon at first, then at most every second.
READY_POLL = Backoff(start=0.1, cap=1.0)
# How long a start command may run before it counts as hung (read at each call).
LOCAL_START_TIMEOUT_SECONDS = 120.0
COMPOSE_TIMEOUT_SECONDS = 600.0
# The credentials deploy/compose.yaml gives its PostgreSQL and RabbitMQ (local development values).
COMPOSE_URLS: Mapping[str, str] = {
    "postgres": "postgresql+psycopg://recon:recon@127.0.0.1:5432/payrails",
    "rabbitmq": "amqp://recon:recon@127.0.0.1:5672/",
}

Say = Callable[[str], None]


class ServicesSettings(DatabaseUrlSettings, BrokerSettings, TopologySettings):
    """Where PostgreSQL and RabbitMQ are, and the topology to declare on the broker."""


class ServicesUnavailable(Exception):
    """PostgreSQL or RabbitMQ is down and could not be started; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Service:
    """A server the stack needs, where the settings say it is."""

    name: str
    variable: str
    compose_service: str
    host: str
    port: int

    @property
    def is_local(self) -> bool:
        return self.host in LOCAL_HOSTS

    def describe(self) -> str:
        return f"{self.name} at {self.host}:{self.port} ({self.variable})"


def database_hosts(database_url: str) -> list[tuple[str, int]]:
    """Every host:port DATABASE_URL names, in order: one, or a primary and its standbys.

    Both multi-host forms SQLAlchemy accepts are read: libpq's ``?host=h1,h2&port=p1,p2`` and
    ``?host=h1:p1&host=h2:p2``.
    """
    url = make_url(database_url)
    given = url.query.get("host")
    if not given:
        return [(url.host or "127.0.0.1", url.port or 5432)]
    tokens = [given] if isinstance(given, str) else list(given)
    hosts = [host for token in tokens for host in token.split(",")]
    ports_given = url.query.get("port", "")
    ports = ",".join([ports_given] if isinstance(ports_given, str) else ports_given).split(",")
    found = []
    for i, host in enumerate(hosts):
        name, _, port = host.partition(":")
        port = port or (ports[i] if i < len(ports) else ports[-1])
        found.append((name or "127.0.0.1", int(port) if port else 5432))
    return found


def _database_service(database_url: str) -> Service:
    """PostgreSQL at the first of DATABASE_URL's hosts that answers, else at the first one."""
    hosts = database_hosts(database_url)
    host, port = next((h for h in hosts if is_reachable(*h)), hosts[0])
    return Service("PostgreSQL", "DATABASE_URL", "postgres", host, port)


def services_of(settings: ServicesSettings) -> tuple[Service, Service]:
    """PostgreSQL and RabbitMQ as DATABASE_URL and AMQP_URL name them."""
    amqp = urlsplit(settings.amqp_url.reveal())
    return (
        _database_service(settings.database_url),
        Service(
            "RabbitMQ", "AMQP_URL", "rabbitmq", amqp.hostname or "127.0.0.1", amqp.port or 5672
        ),
    )


def is_reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout):
            return True
    except OSError:
        return False


def wait_reachable(service: Service, timeout: float = START_TIMEOUT_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    delays = READY_POLL.delays()
    while time.monotonic() < deadline:
        if is_reachable(service.host, service.port):
            return True
        time.sleep(next(delays))
    return False


def _run(argv: Sequence[str], timeout: float = 120.0) -> bool:
    # Fixed argument lists built from shutil.which results: nothing here comes from the user.
    result = subprocess.run(argv, capture_output=True, check=False, timeout=timeout)  # noqa: S603
    return result.returncode == 0


def start_local_postgres(say: Say, clusters: Path = POSTGRES_CLUSTERS) -> bool:
    """Start every Debian PostgreSQL cluster named ``main``; False when none could start.

    ``clusters`` is where Debian keeps one directory per version, each holding its clusters.
    """
    ctl = shutil.which("pg_ctlcluster")
    versions = sorted(p.parent.name for p in clusters.glob("*/main"))
    if ctl is None or not versions:
        return False
    started = []
    for version in versions:
        say(f"starting the local PostgreSQL {version} cluster")
        argv = [ctl, "--skip-systemctl-redirect", version, "main", "start"]
        started.append(_run(argv, LOCAL_START_TIMEOUT_SECONDS))
    return any(started)


def start_local_rabbitmq(say: Say) -> bool:
    """Start a locally installed RabbitMQ in the background; False when it could not start."""
    server = shutil.which("rabbitmq-server")
    if server is None:
        return False
    say("starting the local RabbitMQ (rabbitmq-server -detached)")
    return _run([server, "-detached"], LOCAL_START_TIMEOUT_SECONDS)


def docker_command() -> str | None:
    """The docker CLI when a Docker engine answers, else None."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    try:
        return docker if _run([docker, "info"], timeout=20) else None
    except subprocess.TimeoutExpired:
        return None


def compose_up(docker: str, services: Sequence[Service], say: Say) -> bool:
    names = [s.compose_service for s in services]
    say(f"starting {', '.join(names)} with docker compose -f {COMPOSE_FILE}")
    argv = [docker, "compose", "-f", str(ROOT / COMPOSE_FILE), "up", "-d", *names]
    try:
        return _run(argv, COMPOSE_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as exc:
        raise ServicesUnavailable(start_timed_out(argv, exc.timeout, services)) from exc


def start_timed_out(argv: Sequence[str], timeout: float, services: Sequence[Service]) -> str:
    """What to do when a start command hung: the services may be half-started."""
    variables = " / ".join(s.variable for s in services)
    running = "a server that is running" if len(services) == 1 else "servers that are running"
    return "\n".join(
        [
            f"`{shlex.join(argv)}` did not finish within {timeout:.0f} s, so "
            f"{' and '.join(s.describe() for s in services)} may be half-started.",
            "Find out what it waits for (its log), finish or stop it, then run `make run` again;",
            f"or point {variables} at {running}.",
        ]
    )


def instructions(down: Sequence[Service]) -> str:
    """Exactly what to do when nothing could start the services."""
    names = " ".join(s.compose_service for s in down)
    lines = [
        *(f"{s.describe()} is not reachable." for s in down),
        "Start them one of these ways, then run `make run` again:",
        f"  - Docker:        docker compose -f {COMPOSE_FILE} up -d {names}",
        "  - Debian/Ubuntu: sudo apt-get install postgresql rabbitmq-server",
        "                   (then: sudo pg_ctlcluster <version> main start; "
        "sudo rabbitmq-server -detached)",
        "  - macOS:         brew install postgresql@16 rabbitmq && "
        "brew services start postgresql@16 && brew services start rabbitmq",
        "  - or point DATABASE_URL / AMQP_URL at servers that are running.",
    ]
    return "\n".join(lines)


def _start_locally(service: Service, say: Say, clusters: Path) -> bool:
    if not service.is_local:
        return False
    try:
        if service.name == "PostgreSQL":
            started = start_local_postgres(say, clusters)
        else:
            started = start_local_rabbitmq(say)
    except subprocess.TimeoutExpired as exc:
        argv = [str(a) for a in exc.cmd] if isinstance(exc.cmd, list) else [str(exc.cmd)]
        raise ServicesUnavailable(start_timed_out(argv, exc.timeout, [service])) from exc
    return started and wait_reachable(service)


def ensure_services(
    settings: ServicesSettings,
    env: Mapping[str, str],
    say: Say,
    *,
    clusters: Path = POSTGRES_CLUSTERS,
) -> dict[str, str]:
    """Make PostgreSQL and RabbitMQ reachable, or raise ServicesUnavailable with instructions.

    Returns the variables to add to the environment: compose's credentials for each service
    that compose started and whose URL the environment does not set. ``clusters`` is where
    local PostgreSQL clusters are looked for (see ``start_local_postgres``).
    """
    down = [s for s in services_of(settings) if not is_reachable(s.host, s.port)]
    down = [s for s in down if not _start_locally(s, say, clusters)]
    overrides: dict[str, str] = {}
    if not down:
        return overrides
    docker = docker_command() if all(s.is_local for s in down) else None
    if docker is not None and compose_up(docker, down, say):
        overrides = {
            s.variable: COMPOSE_URLS[s.compose_service] for s in down if s.variable not in env
        }
        down = [s for s in down if not wait_reachable(s)]
    if down:
        raise ServicesUnavailable(instructions(down))
    for variable in overrides:
        say(f"using {variable} with the credentials of {COMPOSE_FILE}")
    return overrides


def _connect_admin(url: URL, database_url: str) -> psycopg.Connection[tuple[object, ...]]:
    """Connect to the server's ``postgres`` database as DATABASE_URL's user.

    Retries while a freshly started server still refuses connections; a refused login is final.
    """
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(False)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    delays = READY_POLL.delays()
    while True:
        try:
            return psycopg.connect(admin, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            reason = redact(server_reason(str(exc)), database_url)
            if any(marker in reason for marker in LOGIN_REFUSED):
                raise ServicesUnavailable(postgres_login_refused(url, reason)) from exc
            if time.monotonic() > deadline:
                message = postgres_not_ready(url, reason, READY_TIMEOUT_SECONDS)
                raise ServicesUnavailable(message) from exc
            time.sleep(next(delays))


def ensure_database(database_url: str, say: Say) -> None:
    """CREATE DATABASE for DATABASE_URL's database when the server lacks it.

    Retries while a freshly started server still refuses connections. Raises ServicesUnavailable
    (without the password) when the server refuses the login.
    """
    url = make_url(database_url)
    name = url.database or "postgres"
    with _connect_admin(url, database_url) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if found is None:
            say(f"creating database {name}")
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg.errors.InsufficientPrivilege as exc:
                reason = redact(server_reason(str(exc)), database_url)
                raise ServicesUnavailable(postgres_may_not_create(url, reason)) from exc


def migrate(database_url: str) -> None:
    """Alembic to head; a user who may not create the tables gets ServicesUnavailable."""
    try:
        upgrade(database_url)
    except DBAPIError as exc:
        if not isinstance(exc.orig, psycopg.errors.InsufficientPrivilege):
            raise
        reason = redact(server_reason(str(exc.orig)), database_url)
        raise ServicesUnavailable(postgres_may_not_migrate(make_url(database_url), reason)) from exc


async def _declare(settings: ServicesSettings) -> Names:
    """Declare the topology, retrying while a freshly started broker finishes booting.

    A refused login or virtual host is final: ServicesUnavailable, without the password.
    """
    url = settings.amqp_url.reveal()
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    delays = READY_POLL.delays()
    while True:
        try:
            connection = await connect(url, timeout=5)
        except (
            aio_pika.exceptions.ProbableAuthenticationError,
            aio_pika.exceptions.AuthenticationError,
        ) as exc:
            reason = redact(str(exc), url)
            raise ServicesUnavailable(rabbitmq_login_refused(url, reason)) from exc
        except aio_pika.exceptions.InvalidFrameError as exc:
            # The broker answered connection.open with connection.close: the vhost was refused.
            raise ServicesUnavailable(rabbitmq_vhost_refused(url)) from exc
        except (OSError, aio_pika.exceptions.AMQPError) as exc:
            if time.monotonic() > deadline:
                reason = redact(str(exc) or type(exc).__name__, url)
                message = rabbitmq_not_ready(url, reason, READY_TIMEOUT_SECONDS)
                raise ServicesUnavailable(message) from exc
            await asyncio.sleep(next(delays))
            continue
        async with connection:
            return await declare_topology(await connection.channel(), settings)


def prepare(env: Mapping[str, str], say: Say) -> dict[str, str]:
    """Services reachable, database present and migrated, topology declared.

    Returns the environment to run the stack with. Raises ServicesUnavailable, with what to do,
    when a service cannot be reached, started or logged in to.
    """
    settings = ServicesSettings.from_env(env)
    effective = {**env, **ensure_services(settings, env, say)}
    settings = ServicesSettings.from_env(effective)
    ensure_database(settings.database_url, say)
    say("applying migrations")
    migrate(settings.database_url)
    names = asyncio.run(_declare(settings))
    say(f"topology declared (queues: {names.events_queue}, {names.authorize_queue}, ...)")
    return effective
