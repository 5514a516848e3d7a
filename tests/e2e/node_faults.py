"""One RabbitMQ node of the cluster broken under load, then healed: the shared steps and figures.

The node broken is the one leading the webhook queue, the worst one to lose: every webhook the
ingresses publish goes through it. The scenarios differ only in how it breaks (``kill -9``, or
suspended like a partitioned node) and comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from tests.cluster.rabbit_cluster import SIZE, Node, RabbitCluster
from tests.e2e.cluster import ClusterScenario
from tests.e2e.counting import Figures
from tests.e2e.drivers import redeliver_until_accepted, steady_load
from tests.e2e.flows import Judge, plan, shop, signed_deliveries, wait_processed
from tests.e2e.processes import ServiceProcess
from tests.e2e.sizes import size

NodeStep = Callable[[RabbitCluster, Node], Awaitable[None]]
WATCH_INTERVAL_SECONDS = 0.25


@dataclass
class ReadinessWatch:
    """Polls each process's readiness every quarter second; notes when each was last not ready.

    The ingress's is ``/readyz`` on its admin port (it has a broker confirm channel); the
    worker's is ``/healthz``, which checks RabbitMQ and PostgreSQL.
    """

    urls: dict[str, str]
    last_down: dict[str, float] = field(default_factory=dict)
    down_samples: dict[str, int] = field(default_factory=dict)
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def of(cls, ingresses: list[ServiceProcess], workers: list[ServiceProcess]) -> ReadinessWatch:
        urls = {p.name: f"{p.admin_url}/readyz" for p in ingresses}
        urls.update({p.name: p.health_url for p in workers})
        return cls(urls)

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while not self._stopped.is_set():
                await asyncio.gather(*(self._probe(session, n, u) for n, u in self.urls.items()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), WATCH_INTERVAL_SECONDS)

    async def _probe(self, session: aiohttp.ClientSession, name: str, url: str) -> None:
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                ready = response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            ready = False
        if not ready:
            self.last_down[name] = time.monotonic()
            self.down_samples[name] = self.down_samples.get(name, 0) + 1

    def stop(self) -> None:
        self._stopped.set()

    def ready_again_after(self, since: float, prefix: str) -> float:
        """Seconds from ``since`` until every ``prefix*`` process was ready for good (0.0 when
        none was ever seen not ready after ``since``)."""
        last = [t for n, t in self.last_down.items() if n.startswith(prefix) and t >= since]
        return max(last) + WATCH_INTERVAL_SECONDS - since if last else 0.0


async def _leader(
    cluster: RabbitCluster, queue: str, *, timeout: float, not_on: Node | None = None
) -> str:
    """The queue's leader, once a node names one (not ``not_on``, nor asked of it); "" when
    none does within ``timeout``. A busy node may list a quorum queue without its leader."""
    ask = [n for n in cluster.nodes if n is not not_on]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leader = await asyncio.to_thread(cluster.leader, queue, ask=ask)
        if leader is not None and (not_on is None or leader != not_on.name):
            return leader
        await asyncio.sleep(0.5)
    return ""


async def _all_online(cluster: RabbitCluster, queue: str, timeout: float) -> int:
    """Wait until every member of ``queue`` is online again; return how many are."""
    deadline = time.monotonic() + timeout
    online: list[str] = []
    while time.monotonic() < deadline:
        try:
            _, online = await asyncio.to_thread(cluster.members, queue, cluster.nodes[0])
        except RuntimeError:
            online = []
        if len(online) == SIZE:
            break
        await asyncio.sleep(1.0)
    return len(online)


async def break_under_load(
    scenario: ClusterScenario,
    label: str,
    *,
    breaks: NodeStep,
    heals: NodeStep,
    hold: float,
    seconds: int,
) -> None:
    """Break the webhook queue's leader node ``seconds * 0.25`` into a load of webhooks and
    checkouts, heal it ``hold`` seconds later, print the figures and assert the goals."""
    stack, cluster, control, ledger, backend, tag, needles = scenario
    queue = stack.names.events_queue
    online_before = await _all_online(cluster, queue, timeout=120)
    assert online_before == SIZE, f"{queue} is not replicated on every node"
    rate = size(20, 60)
    placed = await shop(stack, plan(tag, size(8, 60)))
    deliveries = signed_deliveries(stack, placed, rate * seconds, needles["signature"])
    during = plan(f"{tag}d", size(4, 30))
    starts = stack.starts()

    # Found before the load starts: each rabbitmqctl call takes seconds on a busy machine.
    leader = await _leader(cluster, queue, timeout=60)
    assert leader, f"no node names a leader of {queue}"
    victim = cluster.node(leader)
    on_victim = await asyncio.to_thread(cluster.client_names, victim)
    watch = ReadinessWatch.of(stack.ingresses, stack.workers)
    watching = asyncio.create_task(watch.run())

    load = asyncio.create_task(
        steady_load(stack.ingress_urls, deliveries, rate=rate, max_seconds=seconds)
    )
    await asyncio.sleep(seconds * 0.25)
    shoppers = asyncio.create_task(shop(stack, during, concurrency=4))
    broke_wall, broke_at = time.time(), time.monotonic()
    await breaks(cluster, victim)
    new_leader = await _leader(cluster, queue, timeout=120, not_on=victim)
    elected_s = time.monotonic() - broke_at
    await asyncio.sleep(max(0.0, hold - (time.monotonic() - broke_at)))
    healed_at = time.monotonic()
    await heals(cluster, victim)
    await asyncio.to_thread(cluster.wait_balanced, timeout=180)
    back_s = time.monotonic() - healed_at

    result = await load
    placed_during = await shoppers
    answered_200 = sum(1 for d in deliveries if d.accepted)
    unanswered = await redeliver_until_accepted(stack.ingress_urls, deliveries, max_seconds=120)
    inbox = await wait_processed(ledger, deliveries, timeout=size(180, 600))
    verdict = await Judge(control, ledger, backend).settle(
        tag, expected_orders=len(placed) + len(placed_during), timeout=180
    )
    online_after = await _all_online(cluster, queue, timeout=120)
    watch.stop()
    await watching

    accepted_after = [
        d.accepted_at for d in deliveries if d.accepted_at and d.accepted_at > broke_at
    ]
    first_processed = await ledger.first_processed_after(broke_wall)
    lost = [d.event_id for d in deliveries if d.accepted and d.event_id not in inbox]
    figures = Figures(label)
    figures["sent"] = result.sent
    figures["rate_per_s"] = result.rate
    figures["first_pass_200"] = answered_200
    figures["first_pass_statuses"] = dict(sorted(result.by_status.items()))
    figures["failover_503"] = result.by_status.get(503, 0)
    figures["victim"] = victim.name
    figures["clients_on_victim"] = ",".join(on_victim) or "none"  # whose connection broke
    figures["new_leader"] = new_leader or "none"
    figures["leader_elected_s"] = elected_s  # an upper bound: rabbitmqctl takes seconds
    figures["node_down_s"] = healed_at - broke_at
    figures["node_back_s"] = back_s  # healed until HAProxy counted it up again
    figures["ingress_ready_s"] = watch.ready_again_after(broke_at, "ingress")
    figures["ingress_first_200_s"] = (min(accepted_after) - broke_at) if accepted_after else -1.0
    figures["worker_healthy_s"] = watch.ready_again_after(broke_at, "worker")
    figures["worker_first_event_s"] = (first_processed - broke_wall) if first_processed else -1.0
    figures["not_ready_samples"] = dict(sorted(watch.down_samples.items()))
    figures["orders_during"] = len(placed_during)
    figures["never_accepted"] = len(unanswered)
    figures["lost"] = len(lost)
    figures["members_online_after"] = online_after
    figures.values.update(verdict.summary())
    figures.print(stack.config.run_dir)

    assert set(result.by_status) <= {200, 503}, result.by_status  # a lost node is a 503 at most
    assert new_leader, f"no other node took over {queue}"
    assert lost == []
    assert unanswered == []
    assert verdict.ok, verdict
    assert online_after == SIZE, "the healed node's replica did not come back online"
    await stack.assert_rode_it_out(starts)
