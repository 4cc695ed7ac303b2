"""Broker failover: two bridged mosquitto brokers; broker 1 dies and the fabric moves to broker 2 (issue 7.4),
and comes back to broker 1 when it returns (issue 12.3).

A fabric needs one shared message space, so two independent brokers would split it in two. The honest setup is
two mosquitto instances bridged as provisioning renders a failover hub (`broker.bridges`: every fabric topic both
ways, since any component may connect to either): while both live, a component on either sees every message
(the watcher here sits on broker 2 only and sees the fleet that connected to broker 1). Every component is given
both URLs; when broker 1 is killed, each moves to broker 2, resubscribes and re-announces, clients resend
unanswered tasks, and the fabric keeps answering.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.reliability.fleet import Watcher, bounded, broker_killed_under_load, connection, report_line
from support import RunningBroker

from broker.bridges import ALL_ROLES, Bridge, bridge_topics
from broker.mosquitto import MosquittoConfig, find_mosquitto, render_config
from broker.policy import free_port
from shared.client import FabricTaskClient
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

AGENTS = ("edge-a", "edge-b", "edge-c")
COMPONENTS = {*AGENTS, "router-1"}
TASKS = 60


def failover_bridge(fabric: str, hub_port: int) -> Bridge:
    """The bridge provisioning renders on a failover hub: every fabric topic, both ways."""
    topics = bridge_topics(Topics(fabric), ALL_ROLES, ALL_ROLES)
    return Bridge(f"symphony-{fabric}-failover", (("127.0.0.1", hub_port),), topics)


@pytest.fixture
def bridged_brokers(tmp_path: Path, fabric: str) -> Iterator[tuple[RunningBroker, RunningBroker]]:
    binary = find_mosquitto()
    if binary is None:
        pytest.skip("mosquitto is not installed")
    brokers: list[RunningBroker] = []
    for index in range(2):
        port = free_port()
        bridges = (failover_bridge(fabric, brokers[0].port),) if index == 1 else ()
        text = render_config(MosquittoConfig(host="127.0.0.1", port=port, bridges=bridges))
        config_file = tmp_path / f"mosquitto-{index}.conf"
        config_file.write_text(text)
        broker = RunningBroker("mosquitto", port, [binary, "-c", str(config_file)])
        broker.start()
        brokers.append(broker)
    yield brokers[0], brokers[1]
    for broker in brokers:
        broker.stop()


@pytest.mark.slow
@pytest.mark.mosquitto
def test_fabric_moves_to_the_second_broker_when_the_first_dies(bridged_brokers, fabric: str, fleet_factory):
    first, second = bridged_brokers
    urls = [first.url, second.url]
    fleet = fleet_factory(fabric, urls)
    watcher = Watcher(connection([second.url], fabric))  # on broker 2 only: sees broker 1 through the bridge

    async def scenario():
        await watcher.start()
        try:
            fleet.start_router("router-1")
            for node_id in AGENTS:
                fleet.start_agent(node_id)
            ready = lambda: all(watcher.online(n) for n in AGENTS) and "router-1" in watcher.presences  # noqa: E731
            assert await watcher.wait_until(ready, 30), "the bridge did not carry the beacons to broker 2"
            async with FabricTaskClient(connection(urls, fabric)) as client:
                return await broker_killed_under_load(
                    client, watcher, first.kill, COMPONENTS, tasks=TASKS, concurrency=6, deadline_s=10.0, move_wait_s=30
                )
        finally:
            await watcher.close()

    fault = bounded(scenario(), 150)
    before, report, after = fault.before, fault.during, fault.after
    report_line("broker failover", fault.summary(watcher, "everything re-announced on broker 2"))
    assert before.answered == 6
    assert fault.moved, f"not on broker 2: {COMPONENTS - watcher.announced_since(0)}"
    assert not report.lost, report.summary()
    assert all(reply.code == "timeout" for reply in report.failed), report.failed
    assert after.answered == 6, after.summary()
    assert not watcher.duplicate_answers()


@pytest.mark.mosquitto
def test_a_client_fails_back_to_its_first_broker_when_it_returns(bridged_brokers, fabric: str):
    """Broker 1 stops: the client moves to broker 2. Broker 1 returns: the client probes it, moves back, and its
    subscription works there again (a message published on broker 1 reaches it)."""
    first, second = bridged_brokers
    topics = Topics(fabric)
    settings = connection([first.url, second.url], fabric).model_copy(update={"fail_back_probe_s": 0.5})

    async def scenario():
        client = FabricClient(settings, unique_client_id("failback"))
        received: asyncio.Queue[bytes] = asyncio.Queue()
        await client.subscribe(topics.beacons(), lambda topic, payload: received.put_nowait(payload))
        await client.connect()
        try:
            assert client.broker.port == first.port
            first.stop()
            assert await wait_for(lambda: client.is_connected and client.broker.port == second.port, 20)
            first.start()
            back = await wait_for(lambda: client.is_connected and client.broker.port == first.port, 20)
            publisher = FabricClient(connection([first.url], fabric), unique_client_id("publisher"))
            await publisher.connect()
            await publisher.publish_confirmed(topics.beacon("site-node"), b"hello from broker 1")
            await publisher.close()
            return back, await asyncio.wait_for(received.get(), 10), client.fail_back_count
        finally:
            await client.close()

    back, payload, fail_backs = bounded(scenario(), 60)
    assert back, "the client stayed on broker 2 after broker 1 came back"
    assert payload == b"hello from broker 1"
    assert fail_backs == 1


async def wait_for(condition, timeout: float) -> bool:
    """Poll `condition` every 0.1 s, at most `timeout` seconds."""
    for _ in range(int(timeout * 10)):
        if condition():
            return True
        await asyncio.sleep(0.1)
    return condition()
