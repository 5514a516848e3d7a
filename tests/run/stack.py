"""``python -m scripts.run`` (what ``make run`` runs) as a subprocess on free ports, for tests."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.run import READY_LINE
from shared.messaging import connect_robust
from tests.conftest import delete_topology
from tests.ports import free_port
from tests.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "artifacts" / "run"
START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 60.0
URL_LABELS = (
    "Demo shop",
    "Storefront",
    "Checkout API",
    "Webhook ingress",
    "Worker metrics",
    "Payrails sandbox",
    "Payrails API",
)
_URL_LINE = re.compile(rf"^\s+({'|'.join(URL_LABELS)})\s+(https?://\S+)")


def stack_env(base_env: Mapping[str, str], label: str) -> dict[str, str]:
    """This run's database, fresh AMQP names and free ports for every process."""
    checkout_port = free_port()
    return {
        **os.environ,
        **base_env,
        "AMQP_NAME_PREFIX": f"{base_env['AMQP_NAME_PREFIX']}{label}-{uuid.uuid4().hex[:6]}.",
        "WEBHOOK_PORT": str(free_port()),
        "CHECKOUT_PORT": str(checkout_port),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{checkout_port}",
        "WORKER_METRICS_PORT": str(free_port()),
        "WEBHOOK_ADMIN_PORT": str(free_port()),
        "CHECKOUT_ADMIN_PORT": str(free_port()),
        "DEMO_SHOP_PORT": str(free_port()),
        "PAYRAILS_BASE_URL": f"http://127.0.0.1:{free_port()}",
        "WORKER_SHUTDOWN_GRACE_SECONDS": "5",
        # The run's database is shared: this stack's sweeper must not adopt other tests' orders.
        "SWEEPER_STUCK_AFTER_SECONDS": "86400",
        "NO_COLOR": "1",
    }


@dataclass
class RunningStack:
    """The runner process, every line it printed, and the URLs from its banner."""

    process: subprocess.Popen[str]
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)
    ready: threading.Event = field(default_factory=threading.Event)
    drained: threading.Event = field(default_factory=threading.Event)

    def read_output(self) -> None:
        """Drain stdout for the process's whole life (a full pipe would stall the children)."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            match = _URL_LINE.match(line)
            if match:
                self.urls[match.group(1)] = match.group(2)
            if line.strip() == READY_LINE:
                self.ready.set()
        self.ready.set()
        self.drained.set()

    def wait_ready(self) -> None:
        """Block until the banner is out; fail with the output if the runner exits first."""
        self.ready.wait(START_TIMEOUT_SECONDS)
        if self.process.poll() is not None or "Demo shop" not in self.urls:
            raise AssertionError("make run did not become ready:\n" + self.tail())

    def wait_exit(self) -> int:
        """Wait for the runner to exit on its own and for its last line to be read."""
        code = self.process.wait(START_TIMEOUT_SECONDS)
        self.drained.wait(STOP_TIMEOUT_SECONDS)
        return code

    def stop(self, sig: signal.Signals = signal.SIGINT) -> int:
        """Send ``sig`` and return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def tail(self, count: int = 60) -> str:
        return "\n".join(self.lines[-count:])

    def save_log(self, name: str) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        (LOGS / f"{name}.log").write_text("\n".join(self.lines) + "\n", encoding="utf-8")


def start(env: dict[str, str]) -> RunningStack:
    """Start the runner from the repository root, reading its output in the background."""
    process = subprocess.Popen(
        [sys.executable, "-m", "scripts.run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    stack = RunningStack(process, env)
    threading.Thread(target=stack.read_output, name="make-run-output", daemon=True).start()
    return stack


def launch(env: dict[str, str]) -> RunningStack:
    """Start the runner and wait for its banner."""
    stack = start(env)
    try:
        stack.wait_ready()
    except AssertionError:
        stack.stop()
        raise
    return stack


def get_json(url: str) -> tuple[int, Any]:
    """GET a URL; the status and the decoded JSON body (None when not JSON)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hand a redirect back to the caller (as an HTTPError) instead of following it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def request_once(
    url: str, form: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, str | None]:
    """GET (or POST ``form`` to) a URL without following redirects: status and Location."""
    data = None if form is None else urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(url, data=data, headers=dict(headers or {}))
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.headers.get("Location")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location")


def delete_stack_topology(env: Mapping[str, str]) -> None:
    """Delete the queues and exchanges the runner declared under this stack's prefix."""

    async def delete() -> None:
        connection = await connect_robust(env["AMQP_URL"])
        try:
            await delete_topology(connection, Settings.from_env(env))
        finally:
            await connection.close()

    # A thread of its own: the session's event loop belongs to pytest-asyncio.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, delete()).result()
