"""Rebirth request: a router learns the live fleet where the broker delivers no retained beacon.

RabbitMQ's MQTT plugin keeps retained messages node-local and sends none to wildcard filters; a broker may also
lose its retained store. Here the nodes' retained beacons are cleared after they started, so a router that
starts next finds none: with the rebirth request it sends on connecting, the nodes republish their beacons and
the router routes to them; without it, it knows no agent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from integration.reliability.fleet import Watcher, bounded, connection

from router.service import RouterConfig, RouterService
from shared.client import FabricTaskClient
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

NODES = ("edge-a", "edge-b")


async def clear_retained_beacons(url: str, fabric: str) -> None:
    client = FabricClient(connection([url], fabric), unique_client_id("eraser"))
    await client.connect()
    try:
        for node_id in NODES:
            await client.publish_confirmed(Topics(fabric).beacon(node_id), b"", retain=True, timeout=5.0)
    finally:
        await client.close()


async def router_agents_after_start(url: str, fabric: str, rebirth: bool, state_dir: Path) -> tuple[set[str], str]:
    config = RouterConfig(router_id=f"r-{rebirth}", connection=connection([url], fabric), rebirth_on_connect=rebirth)
    router = RouterService(config)
    await router.start()
    try:
        for _ in range(50):  # bounded: 5 s
            if len(router.live_agents()) == len(NODES):
                break
            await asyncio.sleep(0.1)
        answer = ""
        if rebirth:
            async with FabricTaskClient(connection([url], fabric)) as client:
                answer = (await client.submit("What is 2 + 2?", cot_count=2, deadline_s=10, timeout_s=15)).answer
        return {view.node_id for view in router.live_agents()}, answer
    finally:
        await router.stop()


@pytest.mark.mosquitto
@pytest.mark.parametrize("rebirth", [True, False])
def test_a_router_learns_the_fleet_from_a_rebirth_when_no_beacon_is_retained(
    mosquitto_broker, fabric: str, fleet_factory, tmp_path: Path, rebirth: bool
) -> None:
    fleet = fleet_factory(fabric, [mosquitto_broker.url])
    watcher = Watcher(connection([mosquitto_broker.url], fabric))

    async def scenario() -> tuple[set[str], str]:
        await watcher.start()
        try:
            for node_id in NODES:
                fleet.start_agent(node_id)
            assert await watcher.wait_until(lambda: all(watcher.online(n) for n in NODES), 30)
        finally:
            await watcher.close()
        await clear_retained_beacons(mosquitto_broker.url, fabric)
        return await router_agents_after_start(mosquitto_broker.url, fabric, rebirth, tmp_path)

    nodes, answer = bounded(scenario(), 60)
    if rebirth:
        assert nodes == set(NODES)
        assert answer
    else:
        assert nodes == set()  # the control: nothing retained, no rebirth, no fleet
