"""The service's real processes as subprocesses: start, wait for health, SIGTERM, kill -9."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


class ProcessDied(AssertionError):
    """A service process exited while the suite expected it to run."""


@dataclass
class ServiceProcess:
    """One ``python -m <module> ...`` process with its stdout and stderr kept in files."""

    name: str
    args: list[str]
    env: dict[str, str]
    health_url: str
    log_dir: Path
    admin_url: str | None = None  # where its /readyz and /metrics are served, if anywhere
    starts: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / f"{self.name}.stdout.log"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"{self.name}.stderr.log"

    @property
    def url(self) -> str:
        """Where it serves: the scheme, host and port of its health URL."""
        parts = urlsplit(self.health_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    def start(self) -> None:
        """Spawn the process; logs are appended, so restarts keep what came before."""
        if self.alive:
            raise RuntimeError(f"{self.name} is already running")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", *self.args],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.starts += 1

    def tail(self, lines: int = 30) -> str:
        """The last lines of stderr and stdout, for failure messages."""
        parts = []
        for path in (self.stderr_path, self.stdout_path):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def check_alive(self) -> None:
        if not self.alive:
            raise ProcessDied(f"{self.name} exited with {self.returncode}\n{self.tail()}")

    async def healthy(self, session: aiohttp.ClientSession) -> bool:
        try:
            async with session.get(self.health_url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def wait_healthy(self, timeout: float = 60.0) -> float:
        """Wait until /healthz answers 200; return the seconds it took."""
        started = time.monotonic()
        async with aiohttp.ClientSession() as session:
            while time.monotonic() - started < timeout:
                self.check_alive()
                if await self.healthy(session):
                    return time.monotonic() - started
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} not healthy after {timeout}s\n{self.tail()}")

    async def wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._proc is not None and self._proc.poll() is None:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; return the exit code."""
        if self._proc is None or self._proc.poll() is not None:
            return self.returncode
        with contextlib.suppress(ProcessLookupError):
            self._proc.send_signal(signal.SIGTERM)
        if not await self.wait_exit(grace):
            await self.kill()
        return self.returncode

    async def kill(self) -> None:
        """kill -9, the way a crash or an OOM kill ends a process."""
        if self._proc is None or self._proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._proc.send_signal(signal.SIGKILL)
        await self.wait_exit(10.0)
