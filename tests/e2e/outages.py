"""Take RabbitMQ or PostgreSQL away for a few seconds and bring it back, always.

``real`` outages stop the actual servers (``rabbitmqctl stop_app``, ``pg_ctlcluster stop``);
``proxy`` outages cut a TCP proxy the processes connect through. E2E_OUTAGE picks one; by
default (``auto``) the real servers are stopped when they run on this machine under the tools'
control, and the proxy is used otherwise (say, services in containers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import psycopg

from tests.e2e.proxy import ThreadedProxy


def outage_mode(amqp_url: str, database_url: str) -> str:
    """``real`` or ``proxy``, from E2E_OUTAGE (real, proxy or auto)."""
    mode = os.environ.get("E2E_OUTAGE", "auto")
    if mode not in {"real", "proxy", "auto"}:
        raise ValueError(f"E2E_OUTAGE must be real, proxy or auto, got {mode!r}")
    if mode == "auto":
        return "real" if real_outages_available(amqp_url, database_url) else "proxy"
    return mode


class Outage(Protocol):
    name: str

    async def down(self) -> None: ...

    async def up(self) -> None:
        """Bring the service back and return only once it answers."""


async def run(*argv: str, timeout: float = 120.0) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {text}")
    return text


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), 1):
            return True
    except OSError:
        return False


@dataclass
class RabbitStopApp:
    """``rabbitmqctl stop_app`` / ``start_app``: the node stays, the broker goes."""

    name: str = "rabbitmq"

    async def down(self) -> None:
        await run("rabbitmqctl", "stop_app")

    async def up(self) -> None:
        await run("rabbitmqctl", "start_app")
        await run("rabbitmqctl", "await_startup", "--timeout", "60")
        deadline = time.monotonic() + 60
        while not port_answers(5672):
            if time.monotonic() > deadline:
                raise RuntimeError("RabbitMQ is not listening on 5672 after start_app")
            await asyncio.sleep(0.2)


def postgres_version() -> str:
    """The version directory under /etc/postgresql that has a ``main`` cluster."""
    base = Path("/etc/postgresql")
    versions = sorted(
        (p.name for p in base.iterdir() if (p / "main").is_dir()),
        key=lambda v: [int(x) for x in v.split(".") if x.isdigit()],
    )
    if not versions:
        raise RuntimeError("no PostgreSQL cluster named main under /etc/postgresql")
    return versions[-1]


@dataclass
class PostgresStop:
    """``pg_ctlcluster <version> main stop`` (fast mode: sessions are cut), then ``start``."""

    admin_url: str
    name: str = "postgresql"

    async def down(self) -> None:
        await run(*self._ctl(), "stop")

    async def up(self) -> None:
        # A failed start (already running: the stop never happened) is judged by the check below.
        with contextlib.suppress(RuntimeError):
            await run(*self._ctl(), "start")
        deadline = time.monotonic() + 60
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.admin_url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    def _ctl(self) -> list[str]:
        return ["pg_ctlcluster", "--skip-systemctl-redirect", postgres_version(), "main"]


@dataclass
class ProxyCut:
    """Cut the proxy the processes reach the service through."""

    proxy: ThreadedProxy
    name: str

    async def down(self) -> None:
        self.proxy.cut()

    async def up(self) -> None:
        self.proxy.restore()


def real_outages_available(amqp_url: str, database_url: str) -> bool:
    """Both servers listen on this machine's default ports and their control tools exist."""
    local = all(
        (urlsplit(url).hostname, urlsplit(url).port or port) == ("127.0.0.1", port)
        or (urlsplit(url).hostname, urlsplit(url).port or port) == ("localhost", port)
        for url, port in ((amqp_url, 5672), (database_url, 5432))
    )
    tools = shutil.which("rabbitmqctl") is not None and shutil.which("pg_ctlcluster") is not None
    return local and tools and Path("/etc/postgresql").is_dir()


@dataclass
class OutageWindow:
    """When the service went down and came back (monotonic seconds)."""

    down_at: float = 0.0
    up_at: float = 0.0

    @property
    def seconds(self) -> float:
        return self.up_at - self.down_at


async def take_down(target: Outage, hold: float) -> OutageWindow:
    """Take ``target`` down for ``hold`` seconds; bring it back even if anything fails."""
    window = OutageWindow(down_at=time.monotonic())
    try:
        await target.down()
        await asyncio.sleep(hold)
    finally:
        await asyncio.shield(target.up())
        window.up_at = time.monotonic()
    return window
