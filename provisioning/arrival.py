"""Did the fleet come up? After Ansible, wait for every node's beacon and every router's presence.

Ansible succeeding says the files and units are in place, not that the agents run: a venv Python the service
user cannot execute, a broker the boards cannot reach or a wrong password all end with rc 0 and a silent fleet.
`edge-agent provision` therefore ends here: it watches the fabric as an operator until every planned node has
announced itself online and every planned router is present, and names the ones that did not, with their unit's
last log lines (`unit_log_command`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from provisioning.plan import FleetPlan
from shared import topics as routes
from shared.config import ConnectionSettings
from shared.messages import NodeBeacon, RouterPresence
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

AGENT_SERVICE = "symphony-edge-agent"


@dataclass(frozen=True)
class Expected:
    nodes: tuple[str, ...]
    routers: tuple[str, ...]


def expected(plan: FleetPlan) -> Expected:
    """The nodes (every host that runs `edge-agent start`) and routers the plan put on the fabric."""
    nodes = tuple(node.node_id for node in plan.nodes)
    routers = tuple(node.router_id for node in plan.nodes if node.router_id is not None)
    return Expected(nodes, routers)


def missing(
    wanted: Expected, beacons: Mapping[str, NodeBeacon], presences: Mapping[str, RouterPresence]
) -> dict[str, str]:
    """Name -> why it is not up yet (empty: the whole fleet is up)."""
    found: dict[str, str] = {}
    for node_id in wanted.nodes:
        beacon = beacons.get(node_id)
        if beacon is None:
            found[node_id] = "no beacon: the node never announced itself"
        elif beacon.status == "offline":
            found[node_id] = f"offline (its last beacon, epoch {beacon.epoch}, host {beacon.host or '?'})"
    for router_id in wanted.routers:
        presence = presences.get(router_id)
        if presence is None:
            found[f"router {router_id}"] = "no presence: the router never announced itself"
        elif presence.status == "offline":
            found[f"router {router_id}"] = "offline"
    return found


@dataclass
class FleetView:
    beacons: dict[str, NodeBeacon] = field(default_factory=dict)
    presences: dict[str, RouterPresence] = field(default_factory=dict)

    def on_beacon(self, topic: str, beacon: NodeBeacon) -> None:
        self.beacons[beacon.node_id] = beacon

    def on_presence(self, topic: str, presence: RouterPresence) -> None:
        self.presences[presence.router_id] = presence


async def wait_for_fleet(connection: ConnectionSettings, wanted: Expected, timeout_s: float) -> dict[str, str]:
    """Watch the fabric until the fleet is up or `timeout_s` passed; returns what is still missing, and why."""
    topics = Topics(connection.fabric)
    view = FleetView()
    client = FabricClient(connection, unique_client_id("provision"))
    await client.route(routes.BEACONS.on(topics), view.on_beacon)
    await client.route(routes.ROUTER_PRESENCES.on(topics), view.on_presence)
    deadline = time.monotonic() + timeout_s
    try:
        await client.connect(timeout=min(timeout_s, connection.connect_timeout_s))
    except Exception as error:  # the broker itself is not up: every node is missing, and this says why
        return {name: f"the broker did not accept the operator: {error}" for name in wanted.nodes}
    try:
        while missing(wanted, view.beacons, view.presences) and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
        return missing(wanted, view.beacons, view.presences)
    finally:
        await client.close()


def unit_log_command(ansible: str, inventory: str, host: str, extra_vars: Sequence[str], lines: int = 15) -> list[str]:
    """The ad-hoc Ansible command that prints a board's agent unit's last log lines."""
    command = [ansible, host, "-i", inventory, "-m", "ansible.builtin.command"]
    command += ["-a", f"journalctl -u {AGENT_SERVICE} -n {lines} --no-pager"]
    if "symphony_become=false" not in [variable.replace(" ", "").lower() for variable in extra_vars]:
        command.append("--become")  # as the playbook does: the journal of a system unit
    for variable in extra_vars:
        command += ["-e", variable]
    return command
