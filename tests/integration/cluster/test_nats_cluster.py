"""The fabric on a 3-node NATS cluster (MQTT + JetStream): components on different nodes, one node killed under load.

Agents, the router and the client connect to different nodes of the cluster, each with every node's URL for
failover. Retained beacons published on one node reach the router on another through JetStream. While tasks
flow, the router's node is killed: the router and an agent on that node move to the others, re-announce
(no Will fires, since the server that held their connection is gone; routers rely on the re-announcement or,
for a node that died with it, on staleness), the client resends unanswered tasks, and every task gets exactly
one reply.

What the cluster changes (NATS 2.9): a QoS 1 SUBSCRIBE on a surviving node waits until JetStream has elected
new leaders for the MQTT streams the dead node led, so re-subscribing takes seconds (5-15 s here); the Wills of
the dead node's clients are published by the cluster when their sessions are taken over, after the clients may
already have re-announced (the epoch rule and the node's own re-announcement keep it right).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from integration.reliability.fleet import Watcher, bounded, connection, drive_load, report_line

from shared.client import FabricTaskClient

TASKS = 40


@pytest.mark.slow
@pytest.mark.nats
def test_the_fabric_survives_a_cluster_node_killed_under_load(nats_cluster, fabric: str, fleet_factory) -> None:
    n0, n1, n2 = (broker.url for broker in nats_cluster)
    agents_on_n0 = fleet_factory(fabric, [n0, n2, n1])
    agent_on_n1 = fleet_factory(fabric, [n1, n0, n2])
    router_on_n1 = fleet_factory(fabric, [n1, n2, n0])
    watcher = Watcher(connection([n2], fabric))  # on a node that survives

    async def scenario():
        await watcher.start()
        try:
            router_on_n1.start_router("router-1")
            for node_id in ("edge-a", "edge-b"):
                agents_on_n0.start_agent(node_id)
            agent_on_n1.start_agent("edge-c")
            everyone = ("edge-a", "edge-b", "edge-c")
            ready = lambda: all(watcher.online(n) for n in everyone) and "router-1" in watcher.presences  # noqa: E731
            assert await watcher.wait_until(ready, 40), router_on_n1.log_text("router-1")
            async with FabricTaskClient(connection([n2, n0, n1], fabric)) as client:
                before = await drive_load(client, 4, concurrency=4, deadline_s=10.0, prefix="before")
                load = asyncio.ensure_future(drive_load(client, TASKS, concurrency=4, deadline_s=10.0))
                await asyncio.sleep(1.0)
                nats_cluster[1].kill()
                killed_at = time.monotonic()
                moved = await watcher.wait_until(
                    lambda: {"router-1", "edge-c"} <= watcher.announced_since(killed_at), 30
                )
                report = await load
                after = await drive_load(client, 4, concurrency=4, deadline_s=10.0, prefix="after")
            return before, report, after, moved
        finally:
            await watcher.close()

    before, report, after, moved = bounded(scenario(), 120)
    report_line(
        "nats cluster node killed",
        f"before: {before.summary()}; during: {report.summary()}; after: {after.summary()}; "
        f"answered twice={len(watcher.duplicate_answers())}",
    )
    assert before.answered == 4, before.summary()
    assert moved, "the router and edge-c did not re-announce on another node"
    assert not report.lost, report.summary()
    # Runs in flight when the node died were lost with its connections; the router redispatched them, and a
    # task whose every agent timed out during the failover gets an error reply (still one reply, never none).
    assert all(reply.code in ("timeout", "no_agents") for reply in report.failed), report.failed
    assert report.answered > 0, report.summary()
    assert after.answered == 4, after.summary()
    assert not watcher.duplicate_answers()
