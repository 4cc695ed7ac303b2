"""`edge-agent provision` ends by waiting for the fleet: nodes that never announced themselves are named, and why."""

from __future__ import annotations

import asyncio

from support import RunningBroker, connection_for

from provisioning.arrival import Expected, missing, unit_log_command, wait_for_fleet
from shared.messages import NodeBeacon, RouterPresence, encode
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics


def beacon(node_id: str, status: str = "online") -> NodeBeacon:
    return NodeBeacon(node_id=node_id, epoch=1, instance_id="i", status=status)  # type: ignore[arg-type]


def test_missing_names_silent_and_offline_nodes_and_routers() -> None:
    wanted = Expected(("a", "b", "c"), ("a",))
    beacons = {"a": beacon("a"), "b": beacon("b", "offline")}
    presences = {"a": RouterPresence(router_id="a", instance_id="i", epoch=1, status="online")}
    found = missing(wanted, beacons, presences)
    assert set(found) == {"b", "c"} and "offline" in found["b"] and "never announced" in found["c"]
    assert "router a" in missing(wanted, beacons, {})
    assert missing(Expected(("a",), ()), {"a": beacon("a", "draining")}, {}) == {}  # alive, just draining


def test_the_unit_log_command_reads_the_agent_unit_as_the_playbook_would() -> None:
    command = unit_log_command("ansible", "inv.ini", "board1", ["symphony_become=false"])
    assert command[:2] == ["ansible", "board1"] and "journalctl -u symphony-edge-agent -n 15 --no-pager" in command
    assert "--become" not in command and "--become" in unit_log_command("ansible", "inv.ini", "b", [])


def test_waiting_returns_once_the_fleet_is_up_and_names_who_is_not(amqtt_broker: RunningBroker, fabric: str) -> None:
    connection = connection_for(amqtt_broker, fabric)
    topics = Topics(fabric)

    async def scenario() -> None:
        node = FabricClient(connection, unique_client_id("node"))
        await node.connect()
        await node.publish_confirmed(topics.beacon("up"), encode(beacon("up")), retain=True)
        assert await wait_for_fleet(connection, Expected(("up",), ()), timeout_s=10) == {}
        absent = await wait_for_fleet(connection, Expected(("up", "silent"), ()), timeout_s=1)
        assert list(absent) == ["silent"]
        await node.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
