"""Throughput of the webhook ingress against a bare aiohttp POST handler (``make bench``).

Each server runs in its own process on 127.0.0.1 and is loaded by the same ``wrk`` run (32
connections, 10 s after a 2 s warm-up) with the same signed Payrails-shaped bodies, in five rounds
taken in turn: the bare handler, the real webhook ingress with each publisher
(WEBHOOK_PUBLISHER ``custom`` and ``aio-pika``), and as the ceiling the bare handler plus one
confirmed publish. Each measurement starts with an empty queue, as under the workers that drain it
in production: a backlog of hundreds of thousands of messages held by the quorum queue slows the
broker down round by round. Prints req/s, p50 and p99 of each and, for every round, each
ingress's ratio to bare and the custom/aio-pika ratio; then the median of each ratio and the round
with the median custom/aio-pika ratio.

Then, per ingress and round, a retry storm: 32 concurrent deliveries of one identical signed
webhook, against 32 distinct ones in the same round (time until the last is answered, p99 of
each request), and the latency of one other webhook sent while the storm is in flight. Never
asserts on speed.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aio_pika.abc import AbstractRobustConnection

from ingress.signature import sign
from shared.messaging import Names
from tests.bench.cpu import broker_cpu_seconds, children_cpu_seconds, cpu_seconds
from tests.conftest import delete_topology
from tests.ports import free_port
from tests.settings import Settings

CONNECTIONS = 32
THREADS = 1
DURATION_SECONDS = 10
WARMUP_SECONDS = 2
DISTINCT_BODIES = 2000
ROUNDS = 5  # of every server in turn; the median of each ratio is the result
CUSTOM, AIO_PIKA = "custom", "aio-pika"  # the ingress with each WEBHOOK_PUBLISHER
KEEP_CUSTOM_AT = 1.3  # the custom publisher stays only this far ahead of aio-pika's throughput
STORM = 32  # concurrent deliveries of one identical webhook: a Payrails retry storm
STORM_BURSTS = 10  # storms (and as many bursts of distinct webhooks) per ingress and round

BARE_SERVER = """
import sys
from aiohttp import web
from shared.event_loop import new_event_loop

async def handle(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=b'{"status":"accepted"}', content_type="application/json")

app = web.Application()
app.router.add_post("/webhooks/payrails", handle)
app.router.add_get("/readyz", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
            loop=new_event_loop())
"""

# The bare handler plus one confirmed publish through the ingress's own Broker: what the broker's
# confirm latency alone allows at this concurrency, before any of the ingress's own work.
PUBLISH_ONLY_SERVER = """
import itertools, os, sys
from aiohttp import web
from ingress.broker import broker_ctx
from ingress.keys import BROKER, SETTINGS
from shared.config import WebhookIngressSettings
from shared.event_loop import new_event_loop

ids = itertools.count()

async def handle(request: web.Request) -> web.Response:
    body = await request.read()
    broker = request.app[BROKER]
    await broker.publish(broker.names.webhooks_exchange, "executionActionCompleted", body,
                         message_id=f"bench-{next(ids)}", headers={})
    return web.Response(body=b'{"status":"accepted"}', content_type="application/json")

async def ready(request: web.Request) -> web.Response:
    return web.Response(status=200 if request.app[BROKER].is_ready else 503)

app = web.Application()
app[SETTINGS] = WebhookIngressSettings.from_env(os.environ)
app.cleanup_ctx.append(broker_ctx)
app.router.add_post("/webhooks/payrails", handle)
app.router.add_get("/readyz", ready)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
            loop=new_event_loop())
"""

LUA_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nRESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"non2xx":%d,"errors":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass(frozen=True)
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    errors: int
    cpu_us_per_request: float
    wrk_us_per_request: float
    broker_us_per_request: float | None

    def line(self) -> str:
        return (
            f"{self.name:<8} {self.rps:>9.0f} req/s   p50 {self.p50_ms:6.2f} ms   "
            f"p99 {self.p99_ms:6.2f} ms   CPU us/req: server {self.cpu_us_per_request:4.0f}, "
            f"wrk {self.wrk_us_per_request:3.0f}, broker {_us(self.broker_us_per_request)}   "
            f"non-2xx {self.non2xx}   socket errors {self.errors}"
        )


@dataclass(frozen=True)
class Storm:
    """Bursts of STORM identical deliveries against bursts of STORM distinct ones.

    ``*_total_ms``: median over the bursts of the time until the last delivery was answered;
    ``*_p99_ms``: over every request of those bursts; ``bystander_ms``: median latency of one
    other webhook sent together with each identical burst.
    """

    name: str
    identical_total_ms: float
    identical_p99_ms: float
    distinct_total_ms: float
    distinct_p99_ms: float
    bystander_ms: float
    failures: int

    def line(self) -> str:
        return (
            f"{self.name:<8} storm of {STORM} identical: all answered in "
            f"{self.identical_total_ms:6.1f} ms, p99 {self.identical_p99_ms:6.1f} ms   "
            f"{STORM} distinct: {self.distinct_total_ms:6.1f} ms, p99 "
            f"{self.distinct_p99_ms:6.1f} ms   other webhook during the storm "
            f"{self.bystander_ms:5.1f} ms   non-200 {self.failures}"
        )

    @classmethod
    def median(cls, name: str, storms: list[Storm]) -> Storm:
        def mid(field: str) -> float:
            return float(statistics.median(getattr(s, field) for s in storms))

        return cls(
            name,
            mid("identical_total_ms"),
            mid("identical_p99_ms"),
            mid("distinct_total_ms"),
            mid("distinct_p99_ms"),
            mid("bystander_ms"),
            sum(s.failures for s in storms),
        )


@dataclass(frozen=True)
class Round:
    results: dict[str, Result]
    storms: dict[str, Storm]

    def ratio(self, which: str) -> float:
        """``"custom/bare"`` and the like: the throughput of one server over another's."""
        top, bottom = which.split("/")
        return self.results[top].rps / self.results[bottom].rps

    def ratios(self) -> str:
        return "   ".join(
            f"{which} {self.ratio(which):.3f}x"
            for which in ("custom/bare", "aio-pika/bare", "custom/aio-pika")
        )


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:3.0f}"


def ensure_wrk() -> str:
    """The wrk binary; installed with apt-get when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is not installed: trying `apt-get install -y wrk` ...")
    install = subprocess.run(
        ["apt-get", "install", "-y", "wrk"], capture_output=True, text=True, check=False
    )
    found = shutil.which("wrk")
    if found is None:
        pytest.fail(
            "The benchmark needs the wrk load generator and could not install it "
            f"(apt-get exit {install.returncode}: {install.stderr.strip()[-300:]}). "
            "Install it (Debian/Ubuntu: `apt-get install wrk`, macOS: `brew install wrk`) "
            "and run `make bench` again."
        )
    return found


def webhook(tag: str, n: int) -> bytes:
    """A Payrails-shaped body; ``tag`` and ``n`` make its event id."""
    return json.dumps(
        {
            "event": "executionActionCompleted",
            "time": "2026-11-23T10:00:00.000Z",
            "workspaceId": "bench-workspace",
            "eventTrigger": "action",
            "details": {
                "action": "authorize",
                "actionId": f"{tag}-{n}",
                "success": True,
                "execution": {"id": f"exec-{tag}-{n}", "merchantReference": f"order-{n}"},
                "amount": {"value": "12.34", "currency": "EUR"},
            },
        }
    ).encode()


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(len(ordered) * 0.99) - 1, 0)]


async def measure_storm(name: str, port: int, settings: Settings, number: int) -> Storm:
    """STORM_BURSTS storms and as many bursts of distinct webhooks, in turn, over kept-alive
    connections (one per request in flight, opened by a warm-up burst)."""
    key = settings.payrails_webhook_keys[0]
    url = f"http://127.0.0.1:{port}/webhooks/payrails"
    failures = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=STORM + 1)) as session:

        async def post(body: bytes, signature: str) -> float:
            nonlocal failures
            started = time.perf_counter()
            async with session.post(
                url,
                data=body,
                headers={"X-Signature": signature, "Content-Type": "application/json"},
            ) as response:
                await response.read()
                failures += response.status != 200
            return (time.perf_counter() - started) * 1000

        async def burst(bodies: list[bytes]) -> list[float]:
            """Every body posted at once; the latency of each, in milliseconds."""
            signed = [(body, sign(body, key)) for body in bodies]
            return list(await asyncio.gather(*(post(body, sig) for body, sig in signed)))

        await burst([webhook(f"warm-{name}-{number}", n) for n in range(STORM + 1)])
        failures = 0
        identical_totals: list[float] = []
        distinct_totals: list[float] = []
        bystanders: list[float] = []
        identical_all: list[float] = []
        distinct_all: list[float] = []
        for b in range(STORM_BURSTS):
            one = webhook(f"storm-{name}-{number}-{b}", 0)
            other = webhook(f"bystander-{name}-{number}-{b}", 0)
            *identical, bystander = await burst([one] * STORM + [other])
            identical_totals.append(max(identical))  # all start together: the last answer
            identical_all += identical
            bystanders.append(bystander)
            distinct = await burst(
                [webhook(f"distinct-{name}-{number}-{b}", n) for n in range(STORM)]
            )
            distinct_totals.append(max(distinct))
            distinct_all += distinct
    return Storm(
        name,
        statistics.median(identical_totals),
        p99(identical_all),
        statistics.median(distinct_totals),
        p99(distinct_all),
        statistics.median(bystanders),
        failures,
    )


def lua_script(settings: Settings, directory: Path) -> Path:
    """A wrk script cycling through distinct signed bodies, prebuilt once per thread."""
    key = settings.payrails_webhook_keys[0]
    entries = []
    for n in range(DISTINCT_BODIES):
        body = json.dumps(
            {
                "event": "executionActionCompleted",
                "time": "2026-11-23T10:00:00.000Z",
                "workspaceId": "bench-workspace",
                "eventTrigger": "action",
                "details": {
                    "action": "authorize",
                    "actionId": str(uuid.UUID(int=n)),
                    "success": True,
                    "execution": {"id": f"exec-{n}", "merchantReference": f"order-{n}"},
                    "amount": {"value": "12.34", "currency": "EUR"},
                },
            }
        )
        entries.append(f'{{[==[{body}]==], "{sign(body.encode(), key)}"}}')
    script = directory / "webhooks.lua"
    script.write_text(
        "local items = {\n" + ",\n".join(entries) + "\n}\n"
        "local prepared = {}\nlocal i = 0\n"
        "init = function(args)\n  for n, item in ipairs(items) do\n"
        '    prepared[n] = wrk.format("POST", "/webhooks/payrails", '
        '{["Content-Type"] = "application/json", ["X-Signature"] = item[2]}, item[1])\n'
        "  end\nend\n"
        "request = function()\n  i = (i % #prepared) + 1\n  return prepared[i]\nend\n" + LUA_DONE
    )
    return script


async def wait_until_ready(port: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(400):
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"server on port {port} never became ready")


async def run_wrk(wrk: str, script: Path, port: int, seconds: int) -> dict[str, int]:
    process = await asyncio.create_subprocess_exec(
        wrk,
        f"-t{THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{seconds}s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}/webhooks/payrails",
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await process.communicate()
    line = next(x for x in stdout.decode().splitlines() if x.startswith("RESULT "))
    parsed: dict[str, int] = json.loads(line.removeprefix("RESULT "))
    return parsed


async def measure(
    name: str, wrk: str, script: Path, server: asyncio.subprocess.Process, port: int
) -> Result:
    await run_wrk(wrk, script, port, WARMUP_SECONDS)
    cpu_before, wrk_before, broker_before = (
        cpu_seconds(server.pid),
        children_cpu_seconds(),
        broker_cpu_seconds(),
    )
    raw = await run_wrk(wrk, script, port, DURATION_SECONDS)
    cpu = cpu_seconds(server.pid) - cpu_before
    wrk_cpu = children_cpu_seconds() - wrk_before
    broker_after = broker_cpu_seconds()
    requests = max(raw["requests"], 1)
    broker = (
        None
        if broker_before is None or broker_after is None
        else (broker_after - broker_before) / requests * 1e6
    )
    return Result(
        name=name,
        rps=raw["requests"] / (raw["duration_us"] / 1e6),
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        non2xx=raw["non2xx"],
        errors=raw["errors"],
        cpu_us_per_request=cpu / requests * 1e6,
        wrk_us_per_request=wrk_cpu / requests * 1e6,
        broker_us_per_request=broker,
    )


async def start(
    args: list[str], env: dict[str, str], ready_port: int
) -> asyncio.subprocess.Process:
    """Start a server; return once it answers /readyz on ``ready_port``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, env=env, stdout=asyncio.subprocess.DEVNULL
    )
    await wait_until_ready(ready_port)
    return process


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)


async def purge_events(connection: AbstractRobustConnection, settings: Settings) -> None:
    """Empty the queue the servers publish to (it exists once a server has declared it)."""
    async with connection.channel() as channel:
        queue = await channel.declare_queue(
            Names.from_settings(settings).events_queue, passive=True
        )
        await queue.purge()


@pytest.fixture
async def bench_settings(
    settings: Settings, amqp_connection: AbstractRobustConnection
) -> AsyncIterator[Settings]:
    """This run's names; the topology (and the messages the bench left) is deleted after."""
    yield settings
    await delete_topology(amqp_connection, settings)


async def test_bench_ingress_against_a_bare_aiohttp_handler(
    bench_settings: Settings,
    base_env: dict[str, str],
    tmp_path: Path,
    amqp_connection: AbstractRobustConnection,
) -> None:
    wrk = ensure_wrk()
    load_before = (
        " ".join(Path("/proc/loadavg").read_text().split()[:3])
        if Path("/proc/loadavg").exists()
        else "n/a"
    )
    script = lua_script(bench_settings, tmp_path)
    env = {**os.environ, **base_env, "AMQP_NAME_PREFIX": bench_settings.amqp_name_prefix}
    env.update(WEBHOOK_HOST="127.0.0.1", AMQP_PUBLISH_TIMEOUT_SECONDS="5", LOG_LEVEL="INFO")

    ingress = ["-m", "ingress", "webhooks"]
    servers: dict[str, tuple[list[str], dict[str, str]]] = {
        "bare": (["-c", BARE_SERVER], {}),
        CUSTOM: (ingress, {"WEBHOOK_PUBLISHER": "custom"}),
        AIO_PIKA: (ingress, {"WEBHOOK_PUBLISHER": "aio-pika"}),
        "publish": (["-c", PUBLISH_ONLY_SERVER], {}),
    }

    async def serve_and_measure(name: str, number: int) -> tuple[Result, Storm | None]:
        port, admin_port = free_port(), free_port()
        args, extra = servers[name]
        is_ingress = args is ingress
        if not is_ingress:
            args = [*args, str(port)]
        server_env = {
            **env,
            **extra,
            "WEBHOOK_PORT": str(port),
            "WEBHOOK_ADMIN_PORT": str(admin_port),
        }
        # The ingress answers /readyz on its admin port; the stand-in servers on their only one.
        server = await start(args, server_env, admin_port if is_ingress else port)
        try:
            result = await measure(name, wrk, script, server, port)
            if not is_ingress:
                return result, None
            await purge_events(amqp_connection, bench_settings)
            return result, await measure_storm(name, port, bench_settings, number)
        finally:
            await stop(server)
            if name != "bare":
                await purge_events(amqp_connection, bench_settings)

    print(f"\nload average before the run: {load_before}")
    print(
        f"wrk: {CONNECTIONS} connections, {THREADS} thread, {DURATION_SECONDS} s "
        f"(after {WARMUP_SECONDS} s warm-up), {DISTINCT_BODIES} distinct signed bodies; "
        f"{ROUNDS} rounds of {', '.join(servers)}; storms of {STORM} deliveries, "
        f"{STORM_BURSTS} bursts per ingress and round"
    )
    rounds: list[Round] = []
    for number in range(1, ROUNDS + 1):
        measured = {name: await serve_and_measure(name, number) for name in servers}
        results = {name: result for name, (result, _) in measured.items()}
        storms = {name: storm for name, (_, storm) in measured.items() if storm is not None}
        this = Round(results, storms)
        rounds.append(this)
        print(f"round {number}: {this.ratios()}")
        for result in results.values():
            print("  " + result.line())
        for storm in storms.values():
            print("  " + storm.line())
        for name in (CUSTOM, AIO_PIKA):
            if results[name].non2xx or results[name].errors:
                print(
                    f"  WARNING: {name} answered {results[name].non2xx} non-2xx and had "
                    f"{results[name].errors} socket errors: fast refusals flatter its rate, so "
                    "this round is not valid"
                )

    print("median of each ratio over the rounds:")
    for ratio in ("custom/bare", "aio-pika/bare", "custom/aio-pika"):
        print(f"  {ratio}: {statistics.median(r.ratio(ratio) for r in rounds):.3f}x")
    # The round with the median custom/aio-pika ratio: one noisy round (the broker's fsyncs, a
    # neighbour on the host) moves the result less than it moves any single round.
    middle = sorted(rounds, key=lambda r: r.ratio("custom/aio-pika"))[ROUNDS // 2]
    baseline, custom, aio_pika = (middle.results[n] for n in ("bare", CUSTOM, AIO_PIKA))
    publish_only = middle.results["publish"]
    print("round with the median custom/aio-pika ratio:")
    for result in (baseline, custom, aio_pika, publish_only):
        print(result.line())
    print(middle.ratios())
    print(
        f"p99: custom {custom.p99_ms:.2f} ms, aio-pika {aio_pika.p99_ms:.2f} ms. Rule: keep the "
        f"custom publisher only at >= {KEEP_CUSTOM_AT:.1f}x aio-pika's throughput with an equal or "
        "better p99"
    )
    print(
        f"ceiling: the bare handler plus one confirmed publish through the custom Broker "
        f"('publish') reaches {publish_only.rps / baseline.rps:.2f}x: the broker's confirm "
        f"latency at {CONNECTIONS} connections bounds every ingress; the custom ingress reaches "
        f"{custom.rps / publish_only.rps:.2f}x of that, spending "
        f"{custom.cpu_us_per_request - publish_only.cpu_us_per_request:.0f} us more CPU per "
        "request on verifying, parsing, logging and metrics"
    )
    print(f"retry storms, median over the rounds ({STORM} concurrent deliveries):")
    for name in (CUSTOM, AIO_PIKA):
        print("  " + Storm.median(name, [r.storms[name] for r in rounds]).line())
