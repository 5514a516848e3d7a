"""Scenario 12: the RabbitMQ node leading the webhook queue is cut off for 30 s, then healed.

The node's beam is suspended (SIGSTOP): it keeps its sockets open and answers nothing, to its
peers and to clients alike, as a node behind a network partition does; SIGCONT heals it. Only
under ``make chaos`` (CHAOS_FULL=1): the 30 s hold alone would take a third of the short
scenarios' budget.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.cluster.rabbit_cluster import Node, RabbitCluster
from tests.e2e.cluster import ClusterScenario
from tests.e2e.node_faults import break_under_load
from tests.e2e.sizes import FULL

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(not FULL, reason="make chaos only (CHAOS_FULL=1): a 30 s partition"),
]
PARTITION_SECONDS = 30


async def _suspend(cluster: RabbitCluster, node: Node) -> None:
    await asyncio.to_thread(cluster.suspend, node)


async def _resume(cluster: RabbitCluster, node: Node) -> None:
    await asyncio.to_thread(cluster.resume, node)


async def test_partitioned_leader_node_loses_no_webhook_and_no_order_message(
    cluster_scenario: ClusterScenario,
) -> None:
    await break_under_load(
        cluster_scenario,
        "s12 rabbit node partitioned",
        breaks=_suspend,
        heals=_resume,
        hold=PARTITION_SECONDS,
        seconds=60,
    )
