"""Several brokers, one fabric: bridge directions, rendered bridge sections, bridge accounts, site validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.bridges import ALL_ROLES, Bridge, BridgeTLS, BridgeTopic, bridge_lines, bridge_topics, site_bridges
from broker.embedded import TopicACL
from broker.mosquitto import MosquittoConfig, render_config
from provisioning.errors import ProvisioningError
from provisioning.fleet import load_fleet
from provisioning.inventory import parse_ini_inventory
from provisioning.passwords import argon2_verify, mosquitto_verify, parse_password_file
from provisioning.plan import plan_fleet
from provisioning.render import render
from shared.config import load_node_config
from shared.topics import Topics

P = "symphony/lab"
TOPICS = Topics("lab")

INVENTORY = """
[hubs]
hub ansible_host=10.0.0.1
[gateways]
gw-a ansible_host=10.1.0.1 broker_port=1884
gw-b ansible_host=10.2.0.1
[site_a]
board-a1 ansible_host=10.1.0.2
[site_b]
board-b1 ansible_host=10.2.0.2
board-b2 ansible_host=10.2.0.3
"""

FLEET: dict[str, Any] = {
    "fabric": "lab",
    "broker": {
        "hosts": ["hubs"],
        "tls": False,
        "sites": {
            "a": {"broker": "gw-a", "members": ["site_a"], "clients": ["alice"]},
            "b": {"broker": "gw-b", "members": ["site_b"]},
        },
    },
    "agents": {"site_a": [{"preset": "writer", "backend": "echo"}], "site_b": [{"preset": "math", "backend": "echo"}]},
    "routers": ["board-b1"],
    "clients": ["alice", "bob"],
}


def directions(bridged: tuple[BridgeTopic, ...]) -> dict[str, str]:
    return {topic.pattern.removeprefix(f"{P}/"): topic.direction for topic in bridged}


def test_each_topic_crosses_a_site_bridge_in_the_direction_it_flows() -> None:
    # Site A: agents and a client, no router. Site B: agents and the router. The hub: observers only.
    bridges = site_bridges(
        TOPICS, hub=set(), sites={"a": {"node", "agent", "client"}, "b": {"node", "agent", "router"}}
    )
    assert directions(bridges["a"]) == {
        "beacon/+": "both",  # A's beacons out to the routers; B's in for A's observers
        "state/+": "both",
        "router/+": "in",  # presences of B's router for A's client
        "router/+/inbox": "out",  # A's agents answer B's router
        "router/+/bids": "out",
        "bid/request": "in",
        "rebirth": "in",  # B's router asks A's nodes for their beacons
        "agent/+/run": "in",  # B's router runs A's agents
        "task/submit/+": "out",  # A's client asks B's router
        "task/+/+/events": "in",
        "reply/+": "in",
        "trace/request": "out",  # A's dashboard asks B's router for full traces
        "desired/+": "both",  # operators (observers) anywhere write desired states and orders; nodes read them
        "control/+": "both",
    }
    assert directions(bridges["b"]) == {
        "beacon/+": "both",
        "state/+": "both",
        "router/+": "out",
        "router/+/inbox": "in",
        "router/+/bids": "in",
        "bid/request": "out",
        "rebirth": "out",
        "agent/+/run": "out",
        "task/submit/+": "in",
        "task/+/+/events": "out",
        "reply/+": "out",
        "trace/request": "in",
        "desired/+": "both",
        "control/+": "both",
    }


def test_traffic_that_stays_inside_a_site_is_not_bridged() -> None:
    # Everything at site B; site A is empty: only what observers elsewhere watch leaves B.
    bridges = site_bridges(TOPICS, hub=set(), sites={"a": set(), "b": {"node", "agent", "router", "client"}})
    assert directions(bridges["b"]) == {
        "beacon/+": "out",
        "state/+": "out",
        "router/+": "out",
        "task/+/+/events": "out",
        "trace/request": "in",  # an observer elsewhere may ask B's router for full traces
        "desired/+": "both",  # operators may write them from anywhere
        "control/+": "both",
    }
    operator_topics = {"desired/+", "control/+"}
    a_directions = {t: d for t, d in directions(bridges["a"]).items() if t not in operator_topics}
    assert set(a_directions.values()) == {"in", "out"}
    assert [topic for topic, direction in a_directions.items() if direction == "out"] == ["trace/request"]


def test_a_failover_hub_bridges_every_topic_both_ways() -> None:
    bridged = bridge_topics(TOPICS, ALL_ROLES, ALL_ROLES)
    assert len(bridged) == 15  # every fabric topic (broker.bridges.flows)
    assert {topic.direction for topic in bridged} == {"both"}


def test_the_rendered_bridge_section() -> None:
    bridge = Bridge(
        "symphony-lab-bridge-a",
        (("10.0.0.1", 8883), ("10.0.0.9", 8883)),
        (BridgeTopic(f"{P}/beacon/+", "both"), BridgeTopic(f"{P}/task/submit/+", "out")),
        username="bridge-a",
        password="secret",
        tls=BridgeTLS(Path("/etc/ca.crt"), Path("/etc/bridge.crt"), Path("/etc/bridge.key")),
    )
    text = render_config(MosquittoConfig(port=1884, bridges=(bridge,)))
    section = text[text.index("connection ") :].splitlines()
    assert section[:2] == ["connection symphony-lab-bridge-a", "address 10.0.0.1:8883 10.0.0.9:8883"]
    for line in [
        "bridge_protocol_version mqttv311",
        "try_private true",
        "cleansession true",
        "notifications false",
        "remote_username bridge-a",
        "remote_password secret",
        "bridge_cafile /etc/ca.crt",
        "bridge_certfile /etc/bridge.crt",
        "bridge_keyfile /etc/bridge.key",
        f"topic {P}/beacon/+ both 1",
        f"topic {P}/task/submit/+ out 1",
    ]:
        assert line in section
    assert "max_queued_messages 0" in text  # the broker-wide limits still apply (bridges queue like clients)
    assert "remote_password" not in "\n".join(bridge_lines(Bridge("x", (("h", 1),), ())))


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    (tmp_path / "inventory.ini").write_text(INVENTORY)
    (tmp_path / "fleet.yml").write_text(yaml.safe_dump(FLEET))
    render(tmp_path / "inventory.ini", tmp_path / "fleet.yml", tmp_path / "out")
    return tmp_path / "out"


def test_site_brokers_get_a_bridge_to_the_hub_with_their_own_account(rendered: Path) -> None:
    passwords = yaml.safe_load((rendered / "secrets.yaml").read_text())["passwords"]
    hub = (rendered / "broker/hosts/hub/mosquitto.conf").read_text()
    assert "connection" not in hub
    assert hub == (rendered / "broker/mosquitto.conf").read_text()
    site_a = (rendered / "broker/hosts/gw-a/mosquitto.conf").read_text()
    assert "listener 1884 0.0.0.0" in site_a  # the inventory's broker_port
    assert "address 10.0.0.1:1883" in site_a
    assert f"remote_password {passwords['bridge-a']}" in site_a
    assert f"topic {P}/task/submit/+ out 1" in site_a
    assert "remote_username bridge-b" in (rendered / "broker/hosts/gw-b/mosquitto.conf").read_text()
    for name, verify in [("passwd", mosquitto_verify), ("amqtt-passwd", argon2_verify)]:
        entries = parse_password_file((rendered / "broker" / name).read_text())
        assert verify(passwords["bridge-a"], entries["bridge-a"])
        assert verify(passwords["bridge-b"], entries["bridge-b"])


def test_the_hub_acl_lets_a_bridge_carry_exactly_its_bridged_topics(rendered: Path) -> None:
    acl = TopicACL.load(rendered / "broker/amqtt-acl.yaml")
    for site, host in [("a", "gw-a"), ("b", "gw-b")]:
        bridged = site_bridges_of(rendered, host)
        assert acl.publish[f"bridge-{site}"] == [t.pattern for t in bridged if t.direction in ("out", "both")]
        assert acl.subscribe[f"bridge-{site}"] == [t.pattern for t in bridged if t.direction in ("in", "both")]
    assert f"{P}/agent/+/run" in acl.subscribe["bridge-a"]  # B's router runs A's agents
    assert f"{P}/agent/+/run" not in acl.publish["bridge-a"]
    assert f"{P}/task/submit/+" in acl.publish["bridge-a"]  # alice at A asks B's router
    mosquitto = (rendered / "broker/acl").read_text()
    block = mosquitto[mosquitto.index("user bridge-a") :].split("\n\n")[0].splitlines()
    assert block[1:] == [f"topic write {p}" for p in acl.publish["bridge-a"]] + [
        f"topic read {p}" for p in acl.subscribe["bridge-a"]
    ]


def site_bridges_of(rendered: Path, host: str) -> list[BridgeTopic]:
    lines = (rendered / "broker/hosts" / host / "mosquitto.conf").read_text().splitlines()
    return [BridgeTopic(line.split()[1], line.split()[2]) for line in lines if line.startswith("topic ")]  # type: ignore[arg-type]


def test_nodes_and_clients_connect_to_their_site_broker_first_then_the_hub(rendered: Path) -> None:
    board = load_node_config(rendered / "nodes/board-a1/node.yaml", environment=False)
    assert board.connection.brokers == ("mqtt://10.1.0.1:1884", "mqtt://10.0.0.1:1883")
    assert load_node_config(rendered / "nodes/board-b2/node.yaml", environment=False).connection.brokers[0] == (
        "mqtt://10.2.0.1:1883"
    )
    alice = yaml.safe_load((rendered / "clients/alice.yaml").read_text())
    bob = yaml.safe_load((rendered / "clients/bob.yaml").read_text())
    assert alice["connection"]["brokers"] == ["mqtt://10.1.0.1:1884", "mqtt://10.0.0.1:1883"]
    assert bob["connection"]["brokers"] == ["mqtt://10.0.0.1:1883"]  # at no site: the hub
    variables = yaml.safe_load((rendered / "ansible-vars.yml").read_text())
    assert variables["symphony_broker_hosts"] == ["hub", "gw-a", "gw-b"]


def test_two_hub_hosts_are_one_fabric_the_second_bridged_to_the_first(tmp_path: Path) -> None:
    inventory = "[brokers]\nb1 ansible_host=10.0.0.1\nb2 ansible_host=10.0.0.2\n[boards]\nn1\n"
    fleet = {
        "fabric": "lab",
        "broker": {"hosts": ["brokers"], "tls": False},
        "agents": {"boards": [{"backend": "echo"}]},
    }
    (tmp_path / "inventory.ini").write_text(inventory)
    (tmp_path / "fleet.yml").write_text(yaml.safe_dump(fleet))
    render(tmp_path / "inventory.ini", tmp_path / "fleet.yml", tmp_path / "out")
    second = (tmp_path / "out/broker/hosts/b2/mosquitto.conf").read_text()
    assert "address 10.0.0.1:1883" in second
    assert f"topic {P}/agent/+/run both 1" in second
    assert "connection" not in (tmp_path / "out/broker/hosts/b1/mosquitto.conf").read_text()
    node = load_node_config(tmp_path / "out/nodes/n1/node.yaml", environment=False)
    assert node.connection.brokers == ("mqtt://10.0.0.1:1883", "mqtt://10.0.0.2:1883")


def test_tls_bridges_present_their_own_client_certificate(tmp_path: Path) -> None:
    fleet = {**FLEET, "broker": {**FLEET["broker"], "tls": True}}
    (tmp_path / "inventory.ini").write_text(INVENTORY)
    (tmp_path / "fleet.yml").write_text(yaml.safe_dump(fleet))
    render(tmp_path / "inventory.ini", tmp_path / "fleet.yml", tmp_path / "out")
    site_a = (tmp_path / "out/broker/hosts/gw-a/mosquitto.conf").read_text()
    assert "address 10.0.0.1:8883" in site_a
    assert "bridge_certfile /etc/symphony-edge/broker/tls/bridge.crt" in site_a
    assert (tmp_path / "out/broker/tls/bridge.key").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sites": {"a": {"broker": "gateways"}}}, "must be one inventory host"),
        ({"sites": {"a": {"broker": "hub"}}}, "is also a hub"),
        ({"sites": {"a": {"broker": "gw-a", "clients": ["carol"]}}}, "not in `clients`"),
        (
            {"sites": {"a": {"broker": "gw-a", "members": ["site_b"]}, "b": {"broker": "gw-b", "members": ["site_b"]}}},
            "is at two sites",
        ),
        ({"sites": {"a": {"broker": "gw-x"}}}, "inventory does not have"),
        ({"sites": {"a/b": {"broker": "gw-a"}}}, "site name"),
        ({"kind": "embedded", "sites": {"a": {"broker": "gw-a"}}}, "need broker.kind mosquitto"),
        ({"sites": {"a": {"broker": "gw-a", "bridge": True}}}, "Extra inputs are not permitted"),
    ],
)
def test_bad_sites_are_refused_with_a_clear_message(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    fleet = {**FLEET, "broker": {"hosts": ["hubs"], **change}}
    path = tmp_path / "fleet.yml"
    path.write_text(yaml.safe_dump(fleet))
    with pytest.raises(ProvisioningError, match=message):
        plan_fleet(load_fleet(path), parse_ini_inventory(INVENTORY))


def test_a_node_may_not_take_a_bridge_account_name(tmp_path: Path) -> None:
    inventory = INVENTORY + "[extra]\nbridge-a\n"
    fleet = {**FLEET, "agents": {**FLEET["agents"], "extra": [{"backend": "echo"}]}}
    path = tmp_path / "fleet.yml"
    path.write_text(yaml.safe_dump(fleet))
    with pytest.raises(ProvisioningError, match="clash with each other or with node or client names"):
        plan_fleet(load_fleet(path), parse_ini_inventory(inventory))


def test_a_bad_broker_port_in_the_inventory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yml"
    path.write_text(yaml.safe_dump(FLEET))
    with pytest.raises(ProvisioningError, match="gw-a: broker_port must be a port number, not 'x'"):
        plan_fleet(load_fleet(path), parse_ini_inventory(INVENTORY.replace("broker_port=1884", "broker_port=x")))
