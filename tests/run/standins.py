"""Stand-in executables for the tools scripts/services.py runs, and servers that "come up".

Each stand-in is a small shell script in a directory of its own, put first (and alone) on PATH,
so the real pg_ctlcluster, rabbitmq-server, rabbitmqctl and docker are never found. It records
its name and arguments, one call per line, then exits with the status it was given.
"""

from __future__ import annotations

import shlex
import shutil
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

STAND_IN = """#!/bin/sh
{{ printf '%s' {name}; for arg in "$@"; do printf '\\t%s' "$arg"; done; printf '\\n'; }} >> {calls}
{body}
"""
POLL_SECONDS = 0.05

Call = tuple[str, ...]


class StandIns:
    """A directory of stand-in executables and the log of their calls."""

    def __init__(self, directory: Path) -> None:
        self._sleep = shutil.which("sleep")  # found before PATH holds the stand-ins only
        self.bin = directory / "bin"
        self.bin.mkdir()
        self.calls = directory / "calls.log"
        self.calls.touch()

    def add(self, name: str, status: int = 0) -> None:
        """``name`` records its call and exits with ``status``."""
        self._write(name, f"exit {status}")

    def add_hanging(self, name: str) -> None:
        """``name`` records its call, then does not finish on its own (it sleeps)."""
        assert self._sleep is not None, "the hanging stand-in needs sleep(1)"
        self._write(name, f"exec {shlex.quote(self._sleep)} 600")

    def _write(self, name: str, body: str) -> None:
        script = self.bin / name
        script.write_text(
            STAND_IN.format(name=shlex.quote(name), calls=shlex.quote(str(self.calls)), body=body),
            encoding="utf-8",
        )
        script.chmod(0o755)

    def recorded(self) -> list[Call]:
        """Every call so far, in order: the stand-in's name, then its arguments."""
        lines = self.calls.read_text(encoding="utf-8").splitlines()
        return [tuple(line.split("\t")) for line in lines]


class ComesUp:
    """Listen on ``ports`` once a call starting with ``trigger`` was recorded.

    Plays the server that a start command brings up, so ``wait_reachable`` succeeds.
    """

    def __init__(self, stand_ins: StandIns, trigger: Call, ports: Sequence[int]) -> None:
        self._stand_ins = stand_ins
        self._trigger = trigger
        self._ports = ports
        self._stop = threading.Event()
        self._listeners: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, name="comes-up", daemon=True)

    def _triggered(self) -> bool:
        size = len(self._trigger)
        return any(call[:size] == self._trigger for call in self._stand_ins.recorded())

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._triggered():
                self._listeners = [listening_on(port) for port in self._ports]
                return
            self._stop.wait(POLL_SECONDS)

    def __enter__(self) -> ComesUp:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        for listener in self._listeners:
            listener.close()


def listening_on(port: int) -> socket.socket:
    """A socket accepting TCP connections on 127.0.0.1:``port`` (the kernel completes them)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    return listener
