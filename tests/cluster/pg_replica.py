"""A PostgreSQL primary and a streaming standby of the tests' own, for failover scenarios.

The shared server on 5432 is never touched: both nodes are new clusters (``initdb``,
``pg_basebackup -R -X stream``) on free ports of 127.0.0.1, with their data, sockets and logs
in one temporary directory that is removed afterwards. PostgreSQL refuses to run as root, so
when the tests run as root every server command runs as the ``postgres`` OS user.

Replication is synchronous (``synchronous_standby_names = '*'`` on the primary): a commit is
acknowledged only once the standby has flushed it, which is what makes "no committed order is
lost when the primary dies" a promise rather than a race. The standby carries no such setting,
so once promoted it commits on its own. Clients reach whichever node is the primary through
one multi-host URL with ``target_session_attrs=read-write`` (see ``PgReplicaPair.url``).

``fsync`` is off on both nodes: a killed server process loses nothing the kernel already holds,
and only whole-machine crashes, which these tests do not simulate, need it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from tests.ports import free_port

STARTUP_TIMEOUT_SECONDS = 120
OS_USER = "postgres"  # the server's OS user when the tests run as root
SUPERUSER = "postgres"
_DEBIAN_BINARIES = Path("/usr/lib/postgresql")


def server_bindir() -> Path | None:
    """Where ``initdb``, ``pg_ctl`` and ``pg_basebackup`` are: on PATH, else Debian's layout."""
    found = shutil.which("initdb")
    if found is not None:
        return Path(found).resolve().parent  # a symlink on PATH: the tools beside the real one
    versions = sorted(
        (p for p in _DEBIAN_BINARIES.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()],
    )
    return versions[-1] if versions else None


@dataclass(frozen=True)
class PgNode:
    """One server of the pair: its name, port and data directory."""

    name: str
    port: int
    data_dir: Path
    log_file: Path

    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid, from its ``postmaster.pid`` (None when stopped)."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
        except (OSError, IndexError):
            return None
        return int(first) if first.strip().isdigit() else None


@dataclass
class PgReplicaPair:
    """A running primary and standby; ``url`` reaches whichever of them accepts writes."""

    root: Path
    bindir: Path
    primary: PgNode
    standby: PgNode
    seconds_to_start: float = 0.0

    @property
    def nodes(self) -> tuple[PgNode, PgNode]:
        return (self.primary, self.standby)

    def url(self, database: str, driver: str = "postgresql+psycopg", **options: str) -> str:
        """The multi-host URL in libpq's own form, which SQLAlchemy and libpq both accept.

        ``host=h1,h2&port=p1,p2`` (not ``host=h1:p1,h2:p2``, which neither parses), and
        ``target_session_attrs=read-write``: libpq tries the hosts in order and keeps the first
        one that accepts writes, so a standby, or a primary that has become one, is skipped.
        """
        query = {
            "host": ",".join("127.0.0.1" for _ in self.nodes),
            "port": ",".join(str(node.port) for node in self.nodes),
            "target_session_attrs": "read-write",
            **options,
        }
        return f"{driver}://{SUPERUSER}@/{database}?{urlencode(query, safe=',')}"

    def node_url(self, node: PgNode, database: str = "postgres") -> str:
        """A plain libpq URL of one node, whatever its role."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{node.port}/{database}"

    def kill_primary(self) -> None:
        """``kill -9`` the primary's postmaster and every process it started: the node is gone.

        Its backends would notice the postmaster's death and exit by themselves, a little
        later; killing them too makes every client see its connection drop at once, the way
        a lost machine's peers see resets once its address answers again.
        """
        pid = self.primary.postmaster_pid()
        if pid is None:
            raise RuntimeError("the primary is not running")
        children = _children(pid)
        for victim in (pid, *children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)

    def promote_standby(self) -> float:
        """``pg_ctl promote`` the standby and wait until it accepts writes; the seconds taken."""
        started = time.monotonic()
        self._ctl(self.standby, "promote", "-w", "-t", str(STARTUP_TIMEOUT_SECONDS))
        return time.monotonic() - started

    def stop(self) -> None:
        """``pg_ctl stop -m immediate`` on each node still running; never raises."""
        for node in self.nodes:
            if node.postmaster_pid() is not None:
                with contextlib.suppress(RuntimeError, subprocess.SubprocessError, OSError):
                    self._ctl(node, "stop", "-m", "immediate", "-t", "30")

    def _ctl(self, node: PgNode, *args: str) -> None:
        _run(self.bindir, "pg_ctl", "-D", str(node.data_dir), *args)


def _children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name is in parentheses and may hold spaces: split after it.
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _as_server_user() -> list[str]:
    """The prefix that runs a command as the server's OS user (nothing unless we are root)."""
    return ["runuser", "-u", OS_USER, "--"] if os.geteuid() == 0 else []


def _run(bindir: Path, tool: str, *args: str, timeout: float = STARTUP_TIMEOUT_SECONDS) -> str:
    argv = [*_as_server_user(), str(bindir / tool), *args]
    # Fixed argument lists of the installed server tools; nothing comes from outside the tests.
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{tool} {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result.stdout


def _make_root() -> Path:
    """A fresh directory the server user owns (pytest's temporary directories are root's)."""
    root = Path(tempfile.mkdtemp(prefix="pg-replica-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam(OS_USER)
        os.chown(root, user.pw_uid, user.pw_gid)
    return root


def _append(path: Path, lines: dict[str, str]) -> None:
    """Settings appended to a config file: later lines win over earlier ones."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(f"{key} = {value}\n" for key, value in lines.items()))


def _wait_ready(bindir: Path, node: PgNode) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        try:
            _run(bindir, "pg_isready", "-h", "127.0.0.1", "-p", str(node.port), timeout=10)
            return
        except (RuntimeError, subprocess.TimeoutExpired):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _start(bindir: Path, node: PgNode) -> None:
    _run(
        bindir,
        "pg_ctl",
        *("-D", str(node.data_dir), "-l", str(node.log_file)),
        *("-w", "-t", str(STARTUP_TIMEOUT_SECONDS), "start"),
    )
    _wait_ready(bindir, node)


def start_pair(bindir: Path, root: Path) -> PgReplicaPair:
    """initdb the primary, start it, base-backup the standby from it, start the standby."""
    started = time.monotonic()
    primary = PgNode("primary", free_port(), root / "primary", root / "primary.log")
    standby = PgNode("standby", free_port(), root / "standby", root / "standby.log")
    pair = PgReplicaPair(root, bindir, primary, standby)
    _run(
        bindir,
        "initdb",
        *("-D", str(primary.data_dir), "--auth=trust", "-U", SUPERUSER),
        *("-E", "UTF8", "--no-sync", "--no-instructions"),
    )
    _append(
        primary.data_dir / "postgresql.conf",
        {
            "listen_addresses": "'127.0.0.1'",
            "port": str(primary.port),
            "unix_socket_directories": f"'{root}'",
            "wal_level": "replica",
            "max_wal_senders": "5",
            "hot_standby": "on",
            "fsync": "off",
            "max_connections": "200",
            "synchronous_standby_names": "'*'",
        },
    )
    with (primary.data_dir / "pg_hba.conf").open("a", encoding="utf-8") as hba:
        hba.write("host replication all 127.0.0.1/32 trust\n")
    _start(bindir, primary)
    _run(
        bindir,
        "pg_basebackup",
        *("-D", str(standby.data_dir), "-R", "-X", "stream", "-c", "fast"),
        *("-h", "127.0.0.1", "-p", str(primary.port), "-U", SUPERUSER),
    )
    # The copy carries the primary's settings: its own port, and no synchronous standby of
    # its own, or once promoted it would wait for one that does not exist.
    _append(
        standby.data_dir / "postgresql.conf",
        {"port": str(standby.port), "synchronous_standby_names": "''"},
    )
    _start(bindir, standby)
    pair.seconds_to_start = time.monotonic() - started
    return pair


@contextlib.contextmanager
def running_pg_replica(keep_logs: Path | None = None) -> Iterator[PgReplicaPair]:
    """A primary and a streaming standby; both stopped and their directory removed at the end.

    ``keep_logs``: a directory the servers' logs are copied to before the removal.
    """
    bindir = server_bindir()
    if bindir is None:
        raise RuntimeError("the PostgreSQL server tools (initdb, pg_ctl) are not installed")
    root = _make_root()
    pair: PgReplicaPair | None = None
    try:
        pair = start_pair(bindir, root)
        yield pair
    finally:
        if pair is None:  # a half-started pair: stop whatever came up
            pair = PgReplicaPair(
                root,
                bindir,
                PgNode("primary", 0, root / "primary", root / "primary.log"),
                PgNode("standby", 0, root / "standby", root / "standby.log"),
            )
        pair.stop()
        if keep_logs is not None:
            for log in root.glob("*.log"):
                shutil.copy(log, keep_logs / f"postgresql-{log.name}")
        shutil.rmtree(root, ignore_errors=True)
