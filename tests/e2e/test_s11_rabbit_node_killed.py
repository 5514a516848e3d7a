"""Scenario 11: the RabbitMQ node leading the webhook queue is killed (kill -9) under load."""

from __future__ import annotations

import asyncio

import pytest

from tests.cluster.rabbit_cluster import Node, RabbitCluster
from tests.e2e.cluster import ClusterScenario
from tests.e2e.node_faults import break_under_load
from tests.e2e.sizes import size

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(size(420, 1800))]


async def _kill(cluster: RabbitCluster, node: Node) -> None:
    await asyncio.to_thread(cluster.kill, node)


async def _boot(cluster: RabbitCluster, node: Node) -> None:
    await asyncio.to_thread(cluster.boot, node)


async def test_killed_leader_node_loses_no_webhook_and_no_order_message(
    cluster_scenario: ClusterScenario,
) -> None:
    await break_under_load(
        cluster_scenario,
        "s11 rabbit node killed",
        breaks=_kill,
        heals=_boot,
        hold=size(5, 30),
        seconds=size(15, 90),
    )
