"""Only operators write desired states and drain orders, on both brokers with the rendered ACL: a node or a client
that tries (the attacker's way: its own valid account, a raw publish) reaches nobody and leaves nothing retained."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from secured import Fleet, broker_command, render_fleet, start_broker

from shared.messages import DesiredState, NodeControl, encode
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

SETTLE_S = 0.5


@pytest.fixture(params=["amqtt", "mosquitto"])
def secured(request: pytest.FixtureRequest, tmp_path: Path, fabric: str) -> Iterator[Fleet]:
    fleet = render_fleet(tmp_path, fabric)
    broker = start_broker(broker_command(request.param, fleet, "127.0.0.1"), "127.0.0.1", fleet.port)
    yield fleet
    broker.stop()


async def listen(fleet: Fleet, account: str, *filters: str) -> tuple[FabricClient, list[str]]:
    received: list[str] = []
    client = FabricClient(fleet.connection(account), unique_client_id(account))
    await client.connect()
    for topic_filter in filters:
        await client.subscribe(topic_filter, lambda topic, payload: received.append(topic) if payload else None)
    return client, received


async def scenario(fleet: Fleet) -> None:
    topics = Topics(fleet.connection("ops").fabric)
    desired = encode(DesiredState(node_id="node-b", generation=9))
    drain = encode(NodeControl(node_id="node-b", drain=True))
    node_b, received = await listen(fleet, "node-b", topics.desired("node-b"), topics.control("node-b"))
    for attacker in ("node-a", "alice"):
        forger = FabricClient(fleet.connection(attacker), unique_client_id(attacker))
        await forger.connect()
        # A denied QoS 1 publish may drop the forger's connection (mosquitto's PUBACK 135): failures are fine here.
        for topic, payload in ((topics.desired("node-b"), desired), (topics.control("node-b"), drain)):
            with contextlib.suppress(Exception):
                await forger.publish_confirmed(topic, payload, retain=True, timeout=2.0)
        await forger.close()
    await asyncio.sleep(SETTLE_S)
    assert received == []
    late, late_received = await listen(fleet, "node-b", topics.desired("node-b"), topics.control("node-b"))
    await asyncio.sleep(SETTLE_S)
    assert late_received == []  # nothing forged was retained
    operator = FabricClient(fleet.connection("ops"), unique_client_id("ops"))
    await operator.connect()
    await operator.publish_confirmed(topics.desired("node-b"), desired, retain=True)
    await operator.publish_confirmed(topics.control("node-b"), drain, retain=True)
    deadline = asyncio.get_running_loop().time() + 10
    while len(received) < 2 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    assert sorted(received) == sorted([topics.desired("node-b"), topics.control("node-b")])
    for client in (node_b, late, operator):
        await client.close()


def test_only_operators_write_desired_states_and_drain_orders(secured: Fleet) -> None:
    asyncio.run(asyncio.wait_for(scenario(secured), 60))
