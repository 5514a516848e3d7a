"""``make run``: the whole product on one machine, with readable, prefixed output.

Prepares PostgreSQL and RabbitMQ (see scripts/services.py), then runs the sandbox (as Payrails,
unless PAYRAILS_BASE_URL points at a real Payrails), the webhook ingress, the checkout API, the
worker and, with the sandbox, the demo shop (a merchant site that is a client of the checkout)
as child processes. Ctrl-C or SIGTERM stops them all (SIGTERM, a grace period, then
SIGKILL) and exits 0 when every child stopped cleanly; a child that dies takes the others down,
and a child that fails its stop (an exit status other than 0 or SIGTERM's, or SIGKILL after the
grace period) makes the exit status 1.

"Real credentials configured" is read from PAYRAILS_BASE_URL alone: the sandbox plays Payrails
for a plain-http loopback URL, and any other URL means real Payrails. Settings refuse such a base
URL unless the real secrets are set explicitly, so the sandbox (and the demo shop, which sells
against it) is left out exactly when real credentials are configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from demoshop.config import DemoShopConfig
from ingress.storefront import TEST_CARD_NOTE, TEST_CARDS
from scripts.services import ServicesUnavailable, is_reachable, prepare
from shared.config import (
    CheckoutSettings,
    WebhookIngressSettings,
    WorkerSettings,
    is_sandbox_url,
)
from shared.errors import ConfigError

HEALTH_TIMEOUT_SECONDS = 60.0
STOP_MARGIN_SECONDS = 5.0
READY_LINE = "Ctrl-C stops everything."
COLORS = ("36", "35", "33", "32", "34", "31")
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class StackSettings(WebhookIngressSettings, CheckoutSettings, WorkerSettings):
    """What ``make run`` reads: every process it starts, so a bad value stops it before any."""


def say(message: str) -> None:
    """One line of the runner's own output."""
    print(f"{'run':<9}| {message}", flush=True)


@dataclass(frozen=True, slots=True)
class Child:
    """One process of the stack: how to start it and how to tell it is up."""

    name: str
    argv: tuple[str, ...]
    health_url: str
    port: int
    port_variable: str
    env: Mapping[str, str] = field(default_factory=dict)
    # Its admin server's port and variable (/readyz, /metrics), when it has one of its own.
    admin: tuple[int, str] | None = None

    @property
    def listens_on(self) -> tuple[tuple[int, str], ...]:
        return ((self.port, self.port_variable), *((self.admin,) if self.admin else ()))


@dataclass(frozen=True, slots=True)
class Stack:
    """What ``make run`` starts, and the URLs it prints."""

    children: tuple[Child, ...]
    urls: tuple[tuple[str, str], ...]
    # Where the banner sends the user first (the demo shop), if anywhere.
    start_here: str | None = None


def sandbox_with_real_secrets(settings: StackSettings) -> str | None:
    """A note when Payrails secrets are set but PAYRAILS_BASE_URL still names the sandbox.

    Real credentials with the default base URL would silently run against the sandbox.
    """
    if not is_sandbox_url(settings.payrails_base_url):
        return None
    defaults = StackSettings()
    differs = {
        "PAYRAILS_CLIENT_SECRET": settings.payrails_client_secret.reveal()
        != defaults.payrails_client_secret.reveal(),
        "PAYRAILS_WEBHOOK_SECRETS": (
            settings.payrails_webhook_keys != defaults.payrails_webhook_keys
        ),
    }
    changed = [name for name, differ in differs.items() if differ]
    if not changed:
        return None
    return (
        f"note: {' and '.join(changed)} set while PAYRAILS_BASE_URL is "
        f"{settings.payrails_base_url}: the sandbox plays Payrails with them; to reach a real "
        "Payrails, set PAYRAILS_BASE_URL to its API"
    )


def public_base_url(settings: StackSettings) -> str:
    """The storefront's origin: PUBLIC_BASE_URL, or the checkout port on 127.0.0.1."""
    if settings.public_base_url != StackSettings().public_base_url:
        return settings.public_base_url
    return f"http://127.0.0.1:{settings.checkout_port}"


def child_env(settings: StackSettings, env: Mapping[str, str]) -> dict[str, str]:
    """The runner's environment, with what makes the processes agree on each other's URLs."""
    return {
        **env,
        "PYTHONUNBUFFERED": "1",
        "LOG_FORMAT": env.get("LOG_FORMAT", "console"),
        "PUBLIC_BASE_URL": public_base_url(settings),
    }


def sandbox_child(settings: StackSettings, env: Mapping[str, str]) -> Child:
    port = urlsplit(settings.payrails_base_url).port or 80
    webhook_url = f"http://127.0.0.1:{settings.webhook_port}/webhooks/payrails"
    sandbox_env = {
        "SANDBOX_PORT": str(port),
        "SANDBOX_WEBHOOK_URL": env.get("SANDBOX_WEBHOOK_URL", webhook_url),
        "SANDBOX_PUBLIC_URL": env.get(
            "SANDBOX_PUBLIC_URL", settings.payrails_sdk_origin or settings.payrails_base_url
        ),
    }
    health = f"{settings.payrails_base_url}/healthz"
    return Child("sandbox", ("-m", "sandbox"), health, port, "PAYRAILS_BASE_URL", sandbox_env)


def demo_shop_child(settings: StackSettings, env: Mapping[str, str]) -> Child:
    """The demo shop, selling through this stack's checkout with one of its merchant API keys.

    DEMO_SHOP_CHECKOUT_URL and DEMO_SHOP_API_KEY win when set; by default the shop calls the
    checkout on loopback (server to server) with the first of MERCHANT_API_KEYS.
    """
    shop = DemoShopConfig.from_env(env)
    shop_env = {
        "DEMO_SHOP_CHECKOUT_URL": env.get("DEMO_SHOP_CHECKOUT_URL", "").strip()
        or f"http://127.0.0.1:{settings.checkout_port}",
        "DEMO_SHOP_API_KEY": env.get("DEMO_SHOP_API_KEY", "").strip()
        or settings.merchant_api_keys[0].reveal(),
    }
    health = f"http://127.0.0.1:{shop.port}/healthz"
    return Child("demoshop", ("-m", "demoshop"), health, shop.port, "DEMO_SHOP_PORT", shop_env)


def plan(settings: StackSettings, env: Mapping[str, str]) -> Stack:
    """The children to start and the URLs to print, from the settings."""
    webhooks = f"http://127.0.0.1:{settings.webhook_port}"
    checkout = f"http://127.0.0.1:{settings.checkout_port}"
    worker = f"http://127.0.0.1:{settings.worker_metrics_port}"
    children = [
        Child(
            "webhooks",
            ("-m", "ingress", "webhooks"),
            f"{webhooks}/healthz",
            settings.webhook_port,
            "WEBHOOK_PORT",
            admin=(settings.webhook_admin_port, "WEBHOOK_ADMIN_PORT"),
        ),
        Child(
            "checkout",
            ("-m", "ingress", "checkout"),
            f"{checkout}/healthz",
            settings.checkout_port,
            "CHECKOUT_PORT",
            admin=(settings.checkout_admin_port, "CHECKOUT_ADMIN_PORT"),
        ),
        Child(
            "worker",
            ("-m", "worker"),
            f"{worker}/healthz",
            settings.worker_metrics_port,
            "WORKER_METRICS_PORT",
        ),
    ]
    urls = (
        ("Storefront", f"{public_base_url(settings)}/"),
        ("Checkout API", checkout),
        ("Webhook ingress", f"{webhooks}/webhooks/payrails"),
        ("Webhook metrics", f"http://127.0.0.1:{settings.webhook_admin_port}/metrics"),
        ("Checkout metrics", f"http://127.0.0.1:{settings.checkout_admin_port}/metrics"),
        ("Worker metrics", f"{worker}/metrics"),
    )
    if not is_sandbox_url(settings.payrails_base_url):
        payrails = ("Payrails API", f"{settings.payrails_base_url} (the sandbox is not started)")
        return Stack(tuple(children), (*urls, payrails))
    # The demo shop sells against the sandbox only: with a real Payrails it is left out.
    shop = demo_shop_child(settings, env)
    shop_url = f"http://127.0.0.1:{shop.port}/"
    return Stack(
        (sandbox_child(settings, env), *children, shop),
        (("Demo shop", shop_url), *urls, ("Payrails sandbox", settings.payrails_base_url)),
        start_here=shop_url,
    )


def ports_in_use(children: Sequence[Child]) -> list[str]:
    """A message for each port something else already listens on."""
    return [
        f"port {port} ({variable}) is already in use: stop what listens there or set {variable}"
        for c in children
        for port, variable in c.listens_on
        if is_reachable("127.0.0.1", port, timeout=0.3)
    ]


def banner(stack: Stack) -> str:
    width = max(len(label) for label, _ in stack.urls) + 2
    lines = ["", "The Payrails demo is running:"]
    lines += [f"  {label:<{width}}{url}" for label, url in stack.urls]
    lines += ["", "Test cards:"]
    lines += [f"  {card.number}  {card.behaviour}" for card in TEST_CARDS]
    lines += [f"  {TEST_CARD_NOTE}", ""]
    if stack.start_here is not None:
        lines += [f"Start here: open {stack.start_here} and buy.", ""]
    lines += [READY_LINE]
    return "\n".join(lines)


@dataclass
class Running:
    """A started child, the task copying its output, and the task awaiting its exit."""

    child: Child
    process: asyncio.subprocess.Process
    pump: asyncio.Task[None]
    exited: asyncio.Task[int]


async def pump_output(name: str, color: str | None, stream: asyncio.StreamReader) -> None:
    """Copy a child's output line by line, each line prefixed with the child's name."""
    prefix = f"\x1b[{color}m{name:<9}\x1b[0m| " if color else f"{name:<9}| "
    async for raw in stream:
        sys.stdout.write(prefix + raw.decode(errors="replace").rstrip("\n") + "\n")
        sys.stdout.flush()


def die_with_parent() -> None:
    """In the child, on Linux: SIGTERM when the runner dies, even of SIGKILL (no orphans)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


async def spawn(child: Child, env: Mapping[str, str], color: str | None) -> Running:
    # A session of its own: the terminal's Ctrl-C reaches the runner only, which then stops
    # the children in order instead of all of them racing on SIGINT.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *child.argv,
        env={**env, **child.env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent if sys.platform == "linux" else None,
        limit=1 << 20,
    )
    assert process.stdout is not None
    pump = asyncio.create_task(pump_output(child.name, color, process.stdout))
    return Running(child, process, pump, asyncio.create_task(process.wait()))


async def is_healthy(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url) as response:
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def wait_healthy(pending: list[Child]) -> None:
    """Return once every child answers 200 on its health URL; ``pending`` shrinks meanwhile."""
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while pending:
            answers = await asyncio.gather(*(is_healthy(session, c.health_url) for c in pending))
            pending[:] = [c for c, ok in zip(pending, answers, strict=True) if not ok]
            if pending:
                await asyncio.sleep(0.25)


async def first_exit(running: Sequence[Running]) -> Running:
    done, _ = await asyncio.wait([r.exited for r in running], return_when=asyncio.FIRST_COMPLETED)
    return next(r for r in running if r.exited in done)


def clean_stop(returncode: int | None) -> bool:
    """A child stopped cleanly: it exited 0, or SIGTERM ended it."""
    return returncode in (0, -signal.SIGTERM)


async def stop_all(running: Sequence[Running], grace: float, force: asyncio.Event) -> list[str]:
    """SIGTERM every live child, wait up to ``grace`` (or a second Ctrl-C), then SIGKILL.

    Returns the names of the children that did not stop cleanly (killed, or a failing exit).
    """
    live = [r for r in running if r.process.returncode is None]
    for r in live:
        with contextlib.suppress(ProcessLookupError):
            r.process.terminate()
    waiting: asyncio.Future[Any] = asyncio.gather(*(r.exited for r in live))
    forced: asyncio.Future[Any] = asyncio.create_task(force.wait())
    await asyncio.wait([waiting, forced], timeout=grace, return_when=asyncio.FIRST_COMPLETED)
    forced.cancel()
    for r in live:
        if r.process.returncode is None:
            say(f"{r.child.name} did not stop in time: killing it")
            with contextlib.suppress(ProcessLookupError):
                r.process.kill()
    await asyncio.gather(*(r.exited for r in running))
    await asyncio.gather(*(r.pump for r in running))
    failed = [r for r in live if not clean_stop(r.process.returncode)]
    for r in failed:
        say(f"{r.child.name} did not stop cleanly (exit code {r.process.returncode})")
    return [r.child.name for r in failed]


def install_signal_handlers(stop: asyncio.Event, force: asyncio.Event) -> None:
    """The first SIGINT/SIGTERM asks for a clean stop; a second one skips the grace period."""

    def on_signal() -> None:
        if stop.is_set():
            force.set()
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)


async def race(*tasks: asyncio.Future[Any]) -> asyncio.Future[Any]:
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    return next(iter(done))


async def supervise(stack: Stack, env: Mapping[str, str], grace: float) -> int:
    """Start the children, report readiness, and stop them all on a signal or a death."""
    stop, force = asyncio.Event(), asyncio.Event()
    install_signal_handlers(stop, force)
    colors = COLORS if sys.stdout.isatty() and "NO_COLOR" not in env else (None,) * len(COLORS)
    running = [await spawn(c, env, colors[i]) for i, c in enumerate(stack.children)]
    died = asyncio.create_task(first_exit(running))
    stopped = asyncio.create_task(stop.wait())
    unhealthy = list(stack.children)
    healthy = asyncio.create_task(asyncio.wait_for(wait_healthy(unhealthy), HEALTH_TIMEOUT_SECONDS))
    winner = await race(healthy, died, stopped)
    code = 0
    if winner is healthy and healthy.exception() is not None:
        names = ", ".join(c.name for c in unhealthy)
        say(f"not healthy within {HEALTH_TIMEOUT_SECONDS:.0f} s: {names}")
        code = 1
    elif winner is healthy:
        print(banner(stack), flush=True)
        winner = await race(died, stopped)
    if winner is died:
        dead = died.result()
        say(f"{dead.child.name} exited with code {dead.process.returncode}: stopping the others")
        code = 1
    for task in (died, stopped, healthy):
        task.cancel()
    say("stopping")
    if await stop_all(running, grace, force):
        code = 1
    say("stopped" if code == 0 else f"stopped (exit status {code})")
    return code


def main(env: Mapping[str, str] | None = None) -> int:
    """Prepare the services, then supervise the stack; the process exit status."""
    env = dict(os.environ if env is None else env)
    try:
        settings = StackSettings.from_env(env)
        stack = plan(settings, env)
    except ConfigError as exc:
        say(f"configuration error: {exc}")
        return 2
    if note := sandbox_with_real_secrets(settings):
        say(note)
    busy = ports_in_use(stack.children)
    for message in busy:
        say(message)
    if busy:
        return 1
    try:
        env = prepare(env, say)
    except ServicesUnavailable as exc:
        for line in str(exc).splitlines():
            say(line)
        return 2
    except KeyboardInterrupt:
        say("interrupted before anything was started")
        return 0
    grace = settings.worker_shutdown_grace_seconds + STOP_MARGIN_SECONDS
    return asyncio.run(supervise(stack, child_env(settings, env), grace))


if __name__ == "__main__":
    # Until supervise() installs its handlers, SIGTERM interrupts like Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
