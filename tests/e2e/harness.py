"""The whole stack as real processes: sandbox, webhook ingress(es), checkout, worker(s).

Each process gets this suite's own database and AMQP_NAME_PREFIX, a free port on 127.0.0.1 and
log files under ``artifacts/e2e/<run>/``. In proxy mode (see ``outages``) the processes reach
RabbitMQ and PostgreSQL through TCP proxies the suite can cut; in real mode they connect
directly and outages stop the real servers. Payrails calls always pass a proxy that notes the
access tokens the sandbox issues, so the log scan can look for them.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from shared.messaging import Names
from shared.payrails.models import Execution
from shared.state_machine import Observation
from tests.e2e.outages import Outage, PostgresStop, ProxyCut, RabbitStopApp, outage_mode
from tests.e2e.processes import ROOT, ServiceProcess
from tests.e2e.proxy import ThreadedProxy
from tests.ports import free_port

ARTIFACTS = ROOT / "artifacts" / "e2e"
WORKFLOW = "payment-acceptance"
_ACCESS_TOKEN = re.compile(rb'"access_token"\s*:\s*"([^"]{8,})"')


class TokenWatch:
    """Collects every access token the sandbox issues, read off the wire for the log scan."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: set[str] = set()

    def __call__(self, data: bytes) -> None:
        found = {m.group(1).decode(errors="replace") for m in _ACCESS_TOKEN.finditer(data)}
        if found:
            with self._lock:
                self._tokens |= found

    @property
    def tokens(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._tokens)


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host).geturl()


@dataclass(frozen=True)
class Credentials:
    """Fresh, recognisable secrets per run, so the log scan knows exactly what to look for."""

    client_id: str = field(default_factory=lambda: f"e2e-client-{secrets.token_hex(4)}")
    client_secret: str = field(default_factory=lambda: f"e2e-cs-{secrets.token_hex(16)}")
    webhook_secret: str = field(default_factory=lambda: f"e2e-wh-{secrets.token_hex(16)}")
    merchant_api_key: str = field(default_factory=lambda: f"e2e-mk-{secrets.token_hex(16)}")

    @property
    def webhook_key(self) -> bytes:
        return self.webhook_secret.encode()


@dataclass
class StackConfig:
    run_dir: Path
    database_url: str  # postgresql+psycopg://, direct
    admin_database_url: str
    amqp_url: str  # direct
    prefix: str
    credentials: Credentials = field(default_factory=Credentials)
    # None: E2E_OUTAGE decides (real or proxy). "direct": no proxies and no outage helpers;
    # the scenario breaks servers of its own (a RabbitMQ cluster), never the shared ones.
    outage_mode: str | None = None


class Stack:
    """Start, stop, kill and count the service's processes."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.names = Names(config.prefix)
        self.mode = config.outage_mode or outage_mode(config.amqp_url, config.database_url)
        self.amqp_proxy: ThreadedProxy | None = None
        self.pg_proxy: ThreadedProxy | None = None
        self.token_watch = TokenWatch()
        self.payrails_proxy: ThreadedProxy | None = None
        self.sandbox_port = free_port()
        self.checkout_port = free_port()
        self.sandbox: ServiceProcess | None = None
        self.checkout: ServiceProcess | None = None
        self.extra_checkouts: list[ServiceProcess] = []
        self.ingresses: list[ServiceProcess] = []
        self.workers: list[ServiceProcess] = []
        self._ingress_ports: list[int] = []

    # ------------------------------------------------------------ addresses

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    @property
    def payrails_api_url(self) -> str:
        """What the service calls Payrails at: the sandbox, through the token-watching proxy."""
        if self.payrails_proxy is None:
            return self.sandbox_url
        return f"http://127.0.0.1:{self.payrails_proxy.port}"

    @property
    def checkout_url(self) -> str:
        return f"http://127.0.0.1:{self.checkout_port}"

    @property
    def ingress_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self._ingress_ports]

    @property
    def processes(self) -> list[ServiceProcess]:
        fixed = [p for p in (self.sandbox, self.checkout) if p is not None]
        return fixed + self.extra_checkouts + self.ingresses + self.workers

    def _service_urls(self) -> tuple[str, str]:
        """The AMQP and database URLs the processes use (through the proxies, if any)."""
        if self.amqp_proxy is None or self.pg_proxy is None:
            return self.config.amqp_url, self.config.database_url
        return (
            _with_port(self.config.amqp_url, self.amqp_proxy.port),
            _with_port(self.config.database_url, self.pg_proxy.port),
        )

    def env(self) -> dict[str, str]:
        """The environment every process shares; ports are added per process."""
        creds = self.config.credentials
        amqp_url, database_url = self._service_urls()
        first_ingress = self.ingress_urls[0] if self.ingress_urls else "http://127.0.0.1:9"
        env = {
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "DATABASE_URL": database_url,
            "DATABASE_POOL_SIZE": "5",
            "AMQP_URL": amqp_url,
            "AMQP_NAME_PREFIX": self.config.prefix,
            "AMQP_PUBLISH_TIMEOUT_SECONDS": "2",
            "AMQP_RECONNECT_INTERVAL_SECONDS": "0.5",
            "PAYRAILS_BASE_URL": self.payrails_api_url,
            "PAYRAILS_CLIENT_ID": creds.client_id,
            "PAYRAILS_CLIENT_SECRET": creds.client_secret,
            "PAYRAILS_WEBHOOK_SECRETS": creds.webhook_secret,
            "MERCHANT_API_KEYS": creds.merchant_api_key,
            # Every shopper of the suite comes from 127.0.0.1: one address is the whole load.
            "CHECKOUT_RATE_LIMIT_PER_ADDRESS": "100000",
            "PAYRAILS_TIMEOUT_SECONDS": "3",
            "PAYRAILS_MAX_RETRIES": "3",
            "PAYRAILS_RETRY_BACKOFF_SECONDS": "0.1",
            "PAYRAILS_RETRY_AFTER_MAX_SECONDS": "2",
            "PAYRAILS_LONG_POLL_SECONDS": "10",
            "WORKER_RETRY_DELAYS_SECONDS": "0.5,1,2,4,8,16",
            "WORKER_SHUTDOWN_GRACE_SECONDS": "5",
            "OUTBOX_POLL_SECONDS": "0.5",
            "SWEEPER_INTERVAL_SECONDS": "5",
            "SWEEPER_STUCK_AFTER_SECONDS": "30",
            "CHECKOUT_POLL_TIMEOUT_SECONDS": "10",
            "RETURN_POLL_TIMEOUT_SECONDS": "10",
            "PUBLIC_BASE_URL": self.checkout_url,
            "WEBHOOK_HOST": "127.0.0.1",
            "CHECKOUT_HOST": "127.0.0.1",
            "ADMIN_HOST": "127.0.0.1",
            "CHECKOUT_PORT": str(self.checkout_port),
            "SANDBOX_HOST": "127.0.0.1",
            "SANDBOX_PORT": str(self.sandbox_port),
            "SANDBOX_PUBLIC_URL": self.sandbox_url,
            "SANDBOX_WEBHOOK_URL": f"{first_ingress}/webhooks/payrails",
            "SANDBOX_WEBHOOK_RETRY_SCHEDULE_SECONDS": "0.5,1,2,4,8,8,8,8,8",
            "SANDBOX_WEBHOOK_TIMEOUT_SECONDS": "5",
            "SANDBOX_MAX_WAIT_SECONDS": "10",
            "SANDBOX_ACTION_DELAY_SECONDS": "0.1",
            "SANDBOX_RANDOM_SEED": "7",
        }
        return env

    # ------------------------------------------------------------ lifecycle

    async def start(self, *, ingresses: int = 1, workers: int = 1) -> None:
        self.payrails_proxy = ThreadedProxy("127.0.0.1", self.sandbox_port, self.token_watch)
        self.payrails_proxy.start()
        if self.mode == "proxy":
            amqp = urlsplit(self.config.amqp_url)
            database = urlsplit(self.config.database_url)
            self.amqp_proxy = ThreadedProxy(amqp.hostname or "127.0.0.1", amqp.port or 5672)
            self.pg_proxy = ThreadedProxy(database.hostname or "127.0.0.1", database.port or 5432)
            self.amqp_proxy.start()
            self.pg_proxy.start()
        self._ingress_ports = [free_port() for _ in range(ingresses)]
        self.sandbox = self._process("sandbox", ["sandbox"], self.sandbox_port, "/_sandbox/config")
        self.ingresses = [
            self._process(f"ingress-{i}", ["ingress", "webhooks"], port, "/healthz")
            for i, port in enumerate(self._ingress_ports)
        ]
        self.checkout = self._process("checkout", ["ingress", "checkout"], self.checkout_port)
        for process in self.processes:
            process.start()
        await asyncio.gather(*(p.wait_healthy() for p in self.processes))
        for _ in range(workers):
            await self.add_worker()

    def _process(
        self,
        name: str,
        args: list[str],
        port: int,
        health: str = "/healthz",
        overrides: dict[str, str] | None = None,
    ) -> ServiceProcess:
        env_all = self.env()
        admin_url: str | None = None
        if args[:1] == ["ingress"]:  # readiness and metrics on an admin port of its own
            admin_port = free_port()
            env_all["WEBHOOK_ADMIN_PORT"] = env_all["CHECKOUT_ADMIN_PORT"] = str(admin_port)
            admin_url = f"http://127.0.0.1:{admin_port}"
        if args[:2] == ["ingress", "webhooks"]:
            env_all["WEBHOOK_PORT"] = str(port)
        if args[:1] == ["worker"]:
            env_all["WORKER_METRICS_PORT"] = str(port)
            admin_url = f"http://127.0.0.1:{port}"
        env_all.update(overrides or {})
        return ServiceProcess(
            name=name,
            args=args,
            env=env_all,
            health_url=f"http://127.0.0.1:{port}{health}",
            log_dir=self.config.run_dir,
            admin_url=admin_url,
        )

    async def add_worker(self, *args: str) -> ServiceProcess:
        worker = self._process(f"worker-{len(self.workers)}", ["worker", *args], free_port())
        worker.start()
        self.workers.append(worker)
        await worker.wait_healthy()
        return worker

    async def add_ingress(self) -> ServiceProcess:
        port = free_port()
        ingress = self._process(f"ingress-{len(self.ingresses)}", ["ingress", "webhooks"], port)
        ingress.start()
        self.ingresses.append(ingress)
        self._ingress_ports.append(port)
        await ingress.wait_healthy()
        return ingress

    async def add_checkout(self, **settings: str) -> ServiceProcess:
        """One more checkout process, on a port of its own, with ``settings`` (environment
        variables) over the stack's; ``remove_extra`` stops it. Its URL is ``.url``."""
        port = free_port()
        overrides = {
            "CHECKOUT_PORT": str(port),
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            **settings,
        }
        name = f"checkout-{len(self.extra_checkouts) + 1}"
        checkout = self._process(name, ["ingress", "checkout"], port, overrides=overrides)
        checkout.start()
        self.extra_checkouts.append(checkout)
        await checkout.wait_healthy()
        return checkout

    async def remove_extra(self, *, ingresses: int = 1, workers: int = 1) -> None:
        """Stop (SIGTERM) every extra checkout, and every ingress and worker beyond the first
        ``n``."""
        extra = self.extra_checkouts + self.ingresses[ingresses:] + self.workers[workers:]
        await asyncio.gather(*(p.stop() for p in extra))
        self.extra_checkouts = []
        self.ingresses = self.ingresses[:ingresses]
        self._ingress_ports = self._ingress_ports[:ingresses]
        self.workers = self.workers[:workers]

    async def stop(self) -> dict[str, int | None]:
        """SIGTERM every process (SIGKILL after the grace); return each exit code."""
        processes = self.processes
        codes = await asyncio.gather(*(p.stop() for p in reversed(processes)))
        for proxy in (self.amqp_proxy, self.pg_proxy, self.payrails_proxy):
            if proxy is not None:
                proxy.close()
        return {p.name: code for p, code in zip(reversed(processes), codes, strict=True)}

    def check_alive(self) -> None:
        for process in self.processes:
            process.check_alive()

    def starts(self) -> dict[str, int]:
        return {p.name: p.starts for p in self.processes}

    async def assert_rode_it_out(self, starts: dict[str, int]) -> None:
        """Every process is alive, none was restarted since ``starts``, and all are ready."""
        self.check_alive()
        assert self.starts() == starts, "no process of ours may be restarted"
        await self.wait_ready()

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Every process answers its health check (the worker's includes its dependencies)."""
        await asyncio.gather(*(p.wait_healthy(timeout) for p in self.processes))

    # ------------------------------------------------------------ outages

    def broker_outage(self) -> Outage:
        self._shared_outages_only()
        if self.amqp_proxy is not None:
            return ProxyCut(self.amqp_proxy, "rabbitmq-proxy")
        return RabbitStopApp()

    def database_outage(self) -> Outage:
        self._shared_outages_only()
        if self.pg_proxy is not None:
            return ProxyCut(self.pg_proxy, "postgresql-proxy")
        return PostgresStop(self.config.admin_database_url.replace("+psycopg", ""))

    def _shared_outages_only(self) -> None:
        if self.mode == "direct":
            raise RuntimeError("a direct stack's servers are broken by its scenario, not here")


class SandboxControl:
    """The sandbox's control API (/_sandbox/) and its Payrails API, as the suite uses them."""

    def __init__(self, stack: Stack, session: aiohttp.ClientSession) -> None:
        self.url = stack.sandbox_url
        self.credentials = stack.config.credentials
        self.session = session
        self._token: str | None = None

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(method, self.url + path, json=body) as response:
            if response.status >= 400:
                raise AssertionError(f"{method} {path}: {response.status} {await response.text()}")
            return await response.json()

    async def set_faults(self, faults: dict[str, Any]) -> Any:
        return await self._call("PUT", "/_sandbox/faults", faults)

    async def clear_faults(self) -> Any:
        return await self._call("PUT", "/_sandbox/faults", {"webhooks": {}, "endpoints": {}})

    async def set_config(self, **values: Any) -> Any:
        return await self._call("PUT", "/_sandbox/config", values)

    async def deliveries(self) -> list[dict[str, Any]]:
        data = await self._call("GET", "/_sandbox/deliveries")
        return list(data["deliveries"] if isinstance(data, dict) else data)

    async def wait_deliveries_settled(
        self, execution_ids: set[str], *, timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """Wait until every execution's completion was sent and no delivery is still pending."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            ours = [d for d in await self.deliveries() if d["executionId"] in execution_ids]
            completed = {d["executionId"] for d in ours if d["event"] == "executionActionCompleted"}
            pending = [d for d in ours if d["status"] == "pending"]
            if completed >= execution_ids and not pending:
                return ours
            if asyncio.get_running_loop().time() > deadline:
                missing = len(execution_ids - completed)
                raise AssertionError(
                    f"{missing} executions never completed, {len(pending)} pending"
                )
            await asyncio.sleep(0.5)

    async def resend(self, delivery_id: str) -> Any:
        return await self._call("POST", f"/_sandbox/deliveries/{delivery_id}/resend")

    async def stats(self) -> dict[str, Any]:
        return dict(await self._call("GET", "/_sandbox/stats"))

    async def token(self) -> str:
        if self._token is None:
            async with self.session.post(
                f"{self.url}/auth/token/{self.credentials.client_id}",
                headers={"x-api-key": self.credentials.client_secret},
            ) as response:
                response.raise_for_status()
                self._token = str((await response.json())["access_token"])
        return self._token

    async def execution(self, execution_id: str) -> Execution:
        """GET the execution, retrying through any faults the scenario switched on."""
        path = f"/merchant/workflows/{WORKFLOW}/executions/{execution_id}"
        for _attempt in range(20):
            headers = {"Authorization": f"Bearer {await self.token()}"}
            try:
                async with self.session.get(
                    self.url + path, headers=headers, timeout=aiohttp.ClientTimeout(total=3)
                ) as response:
                    if response.status == 200:
                        return Execution.from_api(await response.json())
                    if response.status == 401:
                        self._token = None
                    elif response.status not in (429, 500, 502, 503, 504):
                        response.raise_for_status()
            except (aiohttp.ClientConnectionError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
        raise AssertionError(f"the sandbox never answered GET execution {execution_id}")

    async def expected_status(self, execution_id: str) -> str:
        """The order status the sandbox's view of this execution implies."""
        return Observation.from_execution(await self.execution(execution_id)).status.value
