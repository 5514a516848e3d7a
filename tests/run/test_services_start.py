"""scripts/services.py's ways to start PostgreSQL and RabbitMQ, with stand-in tools on PATH.

Every address is a free port on 127.0.0.1, and PATH holds the stand-ins only: the real servers
and tools are never touched.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

import scripts.services
from scripts.run import main
from scripts.services import COMPOSE_FILE, COMPOSE_URLS, ROOT, ServicesUnavailable, ensure_services
from tests.ports import free_port
from tests.run.standins import ComesUp, StandIns, listening_on
from tests.settings import Settings

TOOLS = ("pg_ctlcluster", "rabbitmq-server", "rabbitmqctl", "docker")
LOCAL_START_ARGS = ("--skip-systemctl-redirect", "15", "main", "start")


@pytest.fixture
def stand_ins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandIns:
    """An empty directory of stand-ins, and nothing else, on PATH."""
    stand_ins = StandIns(tmp_path)
    monkeypatch.setenv("PATH", str(stand_ins.bin))
    return stand_ins


@pytest.fixture
def clusters(tmp_path: Path) -> Path:
    """Where Debian keeps PostgreSQL clusters: here one, version 15's ``main``."""
    root = tmp_path / "postgresql"
    (root / "15" / "main").mkdir(parents=True)
    return root


@pytest.fixture
def ports() -> tuple[int, int]:
    """Free ports for PostgreSQL and RabbitMQ: nothing listens there until a test says so."""
    return free_port(), free_port()


def local_settings(ports: tuple[int, int]) -> Settings:
    postgres, rabbitmq = ports
    return Settings.from_env(
        {
            "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{postgres}/payrails",
            "AMQP_URL": f"amqp://guest:guest@127.0.0.1:{rabbitmq}/",
        }
    )


def install(stand_ins: StandIns, **statuses: int) -> None:
    """Every tool, exiting 0 unless ``statuses`` says otherwise (``rabbitmq_server=1``)."""
    for tool in TOOLS:
        stand_ins.add(tool, statuses.get(tool.replace("-", "_"), 0))


def compose_up_call(*services: str) -> tuple[str, ...]:
    return ("docker", "compose", "-f", str(ROOT / COMPOSE_FILE), "up", "-d", *services)


def test_a_local_postgres_that_is_down_is_started_with_pg_ctlcluster_for_each_main_cluster(
    stand_ins: StandIns, tmp_path: Path, ports: tuple[int, int]
) -> None:
    clusters = tmp_path / "postgresql"
    for cluster in ("14/main", "16/main", "16/replica"):
        (clusters / cluster).mkdir(parents=True)
    install(stand_ins)
    said: list[str] = []
    with listening_on(ports[1]), ComesUp(stand_ins, ("pg_ctlcluster",), [ports[0]]):
        overrides = ensure_services(local_settings(ports), {}, said.append, clusters=clusters)
    assert overrides == {}
    assert stand_ins.recorded() == [
        ("pg_ctlcluster", "--skip-systemctl-redirect", "14", "main", "start"),
        ("pg_ctlcluster", "--skip-systemctl-redirect", "16", "main", "start"),
    ]
    assert said == [
        "starting the local PostgreSQL 14 cluster",
        "starting the local PostgreSQL 16 cluster",
    ]


def test_a_local_rabbitmq_that_is_down_is_started_detached(
    stand_ins: StandIns, clusters: Path, ports: tuple[int, int]
) -> None:
    install(stand_ins)
    with listening_on(ports[0]), ComesUp(stand_ins, ("rabbitmq-server",), [ports[1]]):
        overrides = ensure_services(local_settings(ports), {}, lambda _: None, clusters=clusters)
    assert overrides == {}
    assert stand_ins.recorded() == [("rabbitmq-server", "-detached")]


def test_services_that_fail_to_start_locally_are_started_with_docker_compose(
    stand_ins: StandIns, clusters: Path, ports: tuple[int, int]
) -> None:
    install(stand_ins, pg_ctlcluster=1, rabbitmq_server=1)
    with ComesUp(stand_ins, ("docker", "compose"), ports):
        ensure_services(local_settings(ports), {}, lambda _: None, clusters=clusters)
    assert stand_ins.recorded() == [
        ("pg_ctlcluster", *LOCAL_START_ARGS),
        ("rabbitmq-server", "-detached"),
        ("docker", "info"),
        compose_up_call("postgres", "rabbitmq"),
    ]


def test_compose_credentials_fill_only_the_urls_the_environment_does_not_set(
    stand_ins: StandIns, clusters: Path, ports: tuple[int, int]
) -> None:
    stand_ins.add("docker")
    settings = local_settings(ports)
    env = {"DATABASE_URL": settings.database_url}
    with ComesUp(stand_ins, ("docker", "compose"), ports):
        overrides = ensure_services(settings, env, lambda _: None, clusters=clusters)
    assert overrides == {"AMQP_URL": COMPOSE_URLS["rabbitmq"]}
    assert stand_ins.recorded()[-1] == compose_up_call("postgres", "rabbitmq")


def test_only_the_service_that_is_down_is_started_with_docker_compose(
    stand_ins: StandIns, clusters: Path, ports: tuple[int, int]
) -> None:
    stand_ins.add("docker")
    with listening_on(ports[0]), ComesUp(stand_ins, ("docker", "compose"), [ports[1]]):
        overrides = ensure_services(local_settings(ports), {}, lambda _: None, clusters=clusters)
    assert overrides == {"AMQP_URL": COMPOSE_URLS["rabbitmq"]}
    assert stand_ins.recorded() == [("docker", "info"), compose_up_call("rabbitmq")]


def test_docker_without_a_running_engine_is_not_asked_to_start_anything(
    stand_ins: StandIns, clusters: Path, ports: tuple[int, int]
) -> None:
    stand_ins.add("docker", 1)
    with pytest.raises(ServicesUnavailable) as raised:
        ensure_services(local_settings(ports), {}, lambda _: None, clusters=clusters)
    assert stand_ins.recorded() == [("docker", "info")]
    assert "docker compose -f deploy/compose.yaml up -d postgres rabbitmq" in str(raised.value)


@pytest.fixture
def runner_env(ports: tuple[int, int]) -> dict[str, str]:
    """What ``make run`` needs besides the services: free ports for its own processes."""
    postgres, rabbitmq = ports
    return {
        "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{postgres}/payrails",
        "AMQP_URL": f"amqp://guest:guest@127.0.0.1:{rabbitmq}/",
        "WEBHOOK_PORT": str(free_port()),
        "CHECKOUT_PORT": str(free_port()),
        "WORKER_METRICS_PORT": str(free_port()),
        "PAYRAILS_BASE_URL": f"http://127.0.0.1:{free_port()}",
    }


def test_with_nothing_installed_make_run_prints_every_way_to_start_the_services(
    stand_ins: StandIns,
    ports: tuple[int, int],
    runner_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(runner_env) == 2
    out = capsys.readouterr().out
    postgres, rabbitmq = ports
    expected = [
        f"PostgreSQL at 127.0.0.1:{postgres} (DATABASE_URL) is not reachable.",
        f"RabbitMQ at 127.0.0.1:{rabbitmq} (AMQP_URL) is not reachable.",
        "Start them one of these ways, then run `make run` again:",
        "  - Docker:        docker compose -f deploy/compose.yaml up -d postgres rabbitmq",
        "  - Debian/Ubuntu: sudo apt-get install postgresql rabbitmq-server",
        "                   (then: sudo pg_ctlcluster <version> main start; "
        "sudo rabbitmq-server -detached)",
        "  - macOS:         brew install postgresql@16 rabbitmq && "
        "brew services start postgresql@16 && brew services start rabbitmq",
        "  - or point DATABASE_URL / AMQP_URL at servers that are running.",
    ]
    assert out.splitlines() == [f"{'run':<9}| {line}" for line in expected]
    assert stand_ins.recorded() == []


def test_a_local_start_that_hangs_names_the_command_and_the_variable_to_set(
    stand_ins: StandIns,
    clusters: Path,
    ports: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scripts.services, "LOCAL_START_TIMEOUT_SECONDS", 1.0)
    install(stand_ins)
    stand_ins.add_hanging("pg_ctlcluster")
    with listening_on(ports[1]), pytest.raises(ServicesUnavailable) as raised:
        ensure_services(local_settings(ports), {}, lambda _: None, clusters=clusters)
    command = shlex.join([str(stand_ins.bin / "pg_ctlcluster"), *LOCAL_START_ARGS])
    assert str(raised.value).splitlines() == [
        f"`{command}` did not finish within 1 s, so "
        f"PostgreSQL at 127.0.0.1:{ports[0]} (DATABASE_URL) may be half-started.",
        "Find out what it waits for (its log), finish or stop it, then run `make run` again;",
        "or point DATABASE_URL at a server that is running.",
    ]
    assert stand_ins.recorded() == [("pg_ctlcluster", *LOCAL_START_ARGS)]


def multi_host_settings(postgres: tuple[int, int], rabbitmq: int) -> Settings:
    """DATABASE_URL naming a primary and a standby, libpq's multi-host form."""
    hosts = "127.0.0.1,127.0.0.1"
    query = f"host={hosts}&port={postgres[0]},{postgres[1]}&target_session_attrs=read-write"
    return Settings.from_env(
        {
            "DATABASE_URL": f"postgresql+psycopg://postgres@/payrails?{query}",
            "AMQP_URL": f"amqp://guest:guest@127.0.0.1:{rabbitmq}/",
        }
    )


def test_a_multi_host_database_url_is_reachable_through_any_of_its_hosts(
    stand_ins: StandIns, clusters: Path, ports: tuple[int, int]
) -> None:
    install(stand_ins)
    first_down, second_up = free_port(), ports[0]
    with listening_on(second_up), listening_on(ports[1]):
        settings = multi_host_settings((first_down, second_up), ports[1])
        overrides = ensure_services(settings, {}, lambda _: None, clusters=clusters)
    assert overrides == {}
    assert stand_ins.recorded() == []


def test_a_multi_host_database_url_with_every_host_down_names_its_first_host(
    stand_ins: StandIns, clusters: Path, ports: tuple[int, int]
) -> None:
    first, second = ports[0], free_port()
    with listening_on(ports[1]), pytest.raises(ServicesUnavailable) as raised:
        ensure_services(multi_host_settings((first, second), ports[1]), {}, lambda _: None)
    assert f"PostgreSQL at 127.0.0.1:{first} (DATABASE_URL) is not reachable." in str(raised.value)
