"""The fabric on a 3-node NATS cluster (MQTT + JetStream): components on different nodes, one node killed under load.

Agents, the router and the client connect to different nodes of the cluster, each with every node's URL for
failover. Retained beacons published on one node reach the router on another through JetStream. While tasks
flow, the router's node is killed: the router and an agent on that node move to the others, re-announce
(no Will fires, since the server that held their connection is gone; routers rely on the re-announcement or,
for a node that died with it, on staleness), the client resends unanswered tasks, and every task gets exactly
one reply.

What the cluster changes (nats-server 2.9): every QoS 1 publish and subscription goes through JetStream streams
and consumers replicated on the three nodes. When a node dies, the leaders it held are re-elected, and until then
the survivors time out CONNECTs (the sessions' stream) and stall QoS 1 publishes, closing the connection of a
client whose publish timed out. Components here subscribe at QoS 0 (`connection: {subscribe_qos: 0}`, as the
README advises for NATS): a plain NATS subscription, where a QoS 1 one is a JetStream consumer that is refused
(SUBACK 0x80) and delivers nothing until its own leader is re-elected, one consumer after another (10-40 s on a
loaded machine). The killed node's clients are back 10-15 s later (loopback, 2 cores). The node killed here is not
JetStream's metadata leader: killing that one stalls every MQTT CONNECT in the cluster for about 30 s more. The
Wills of the dead node's clients are published by the cluster later, when their sessions are taken over, possibly
after the clients have re-announced (the epoch rule and the node's own re-announcement keep the registry right).
"""

from __future__ import annotations

import pytest
import yaml
from integration.reliability.fleet import ECHO_DELAY_S, Fleet, Watcher, bounded, broker_killed_under_load, report_line

from shared.client import FabricTaskClient
from shared.config import ConnectionSettings

TASKS = 24
# A cluster re-elects JetStream leaders for a few seconds after losing a node; the reliability suite's 2 s
# keepalive would drop healthy connections to the surviving nodes in that time, so components here use 5 s.
KEEPALIVE_S = 5
SUBACK_WAIT_S = 20.0


# As the README advises for NATS: QoS 0 subscriptions (plain NATS ones, no JetStream consumer to re-elect when a
# server dies) and no fail-back (the servers are peers: going back to the first one is one more session takeover,
# made through JetStream while a restarted server catches up)
SETTINGS = {"keepalive_s": KEEPALIVE_S, "connect_timeout_s": SUBACK_WAIT_S, "subscribe_qos": 0, "fail_back_probe_s": 0}


def connection(urls: list[str], fabric: str) -> ConnectionSettings:
    return ConnectionSettings(fabric=fabric, brokers=tuple(urls), **SETTINGS)


def cluster_fleet(fleet: Fleet) -> Fleet:
    """The fleet's node.yaml with the cluster's keepalive (written before Fleet would write its default)."""
    agent = {"preset": "math", "backend": "echo", "max_in_flight": 4, "backend_settings": {"delay_s": ECHO_DELAY_S}}
    config = {"agents": [agent], "connection": SETTINGS, "state_interval_s": 1}
    (fleet.directory / "node.yaml").write_text(yaml.safe_dump(config))
    return fleet


@pytest.mark.slow
@pytest.mark.nats
def test_the_fabric_survives_a_cluster_node_killed_under_load(nats_cluster, fabric: str, fleet_factory) -> None:
    victim, spare, leader = nats_cluster.fault_roles()
    on_victim, on_spare, on_leader = (nats_cluster.url(index) for index in (victim, spare, leader))
    agents_elsewhere = cluster_fleet(fleet_factory(fabric, [on_spare, on_leader, on_victim]))
    agent_on_victim = cluster_fleet(fleet_factory(fabric, [on_victim, on_spare, on_leader]))
    router_on_victim = cluster_fleet(fleet_factory(fabric, [on_victim, on_leader, on_spare]))
    watcher = Watcher(connection([on_leader], fabric))

    async def scenario():
        await watcher.start()
        try:
            router_on_victim.start_router("router-1")
            for node_id in ("edge-a", "edge-b"):
                agents_elsewhere.start_agent(node_id)
            agent_on_victim.start_agent("edge-c")
            everyone = ("edge-a", "edge-b", "edge-c")
            ready = lambda: all(watcher.online(n) for n in everyone) and "router-1" in watcher.presences  # noqa: E731
            assert await watcher.wait_until(ready, 40), router_on_victim.log_text("router-1")
            async with FabricTaskClient(connection([on_leader, on_spare, on_victim], fabric)) as client:
                # The client's default deadline (60 s): a task caught in the cluster's stall is answered after it.
                # 60 s to move (the test's own wait): the survivors time out CONNECTs until JetStream re-elects the
                # leader of the sessions' stream (10-15 s on a loaded machine, with every CONNECT's 4 s timeout)
                return await broker_killed_under_load(
                    client,
                    watcher,
                    nats_cluster.brokers[victim].kill,
                    {"router-1", "edge-c"},
                    tasks=TASKS,
                    concurrency=4,
                    deadline_s=60.0,
                    move_wait_s=60,
                    after_deadline_s=30.0,
                )
        finally:
            await watcher.close()

    fault = bounded(scenario(), 200)
    before, report, after = fault.before, fault.during, fault.after
    report_line("nats cluster node killed", fault.summary(watcher, "router and edge-c re-announced"))
    assert before.answered == 4, before.summary()
    assert fault.moved, "the router and edge-c did not re-announce on another node"
    assert not report.lost, report.summary()
    # A run in flight on the killed node's connections is lost with them; the router redispatches it, and a task
    # whose every agent timed out meanwhile gets an error reply (one reply, never none).
    assert all(reply.code in ("timeout", "no_agents") for reply in report.failed), report.failed
    assert report.answered > 0, report.summary()
    assert after.answered == 4, after.summary()
    assert not watcher.duplicate_answers()
