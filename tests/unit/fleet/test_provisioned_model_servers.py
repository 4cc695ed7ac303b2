"""Provisioned nodes serve the models they hold on their inventory address (unless the fleet file says null)."""

from __future__ import annotations

from pathlib import Path

from provisioning.fleet import FleetSpec
from provisioning.inventory import load_inventory
from provisioning.plan import node_config, plan_fleet
from shared.config import NodeConfig

FLEET = {"fabric": "lab", "broker": {"hosts": ["hub"]}, "agents": {"boards": [{"preset": "math", "backend": "echo"}]}}


def test_nodes_with_agents_serve_models_on_their_address(tmp_path: Path) -> None:
    inventory_text = "[brokers]\nhub ansible_host=10.0.0.1\n[boards]\nb1 ansible_host=10.0.0.7\n"
    (tmp_path / "inventory.ini").write_text(inventory_text)
    inventory = load_inventory(tmp_path / "inventory.ini")
    plan = plan_fleet(FleetSpec.model_validate(FLEET), inventory)
    (node,) = plan.nodes
    config = NodeConfig.model_validate(node_config(plan, node, "secret"))
    assert config.model_server is not None
    assert (config.model_server.host, config.model_server.advertise, config.model_server.port) == (
        "10.0.0.7",
        "10.0.0.7",
        8765,
    )
    assert not config.model_server.strict_port  # a port in use: any free port (peers read it from the beacon)
    strict = plan_fleet(FleetSpec.model_validate({**FLEET, "model_servers": {"strict_port": True}}), inventory)
    assert node_config(strict, strict.nodes[0], "secret")["model_server"]["strict_port"] is True
    off = plan_fleet(FleetSpec.model_validate({**FLEET, "model_servers": None}), inventory)
    assert "model_server" not in node_config(off, off.nodes[0], "secret")


def test_a_host_without_an_address_listens_everywhere_and_advertises_its_name(tmp_path: Path) -> None:
    (tmp_path / "inventory.ini").write_text("[brokers]\nhub ansible_host=10.0.0.1\n[boards]\nb1\n")
    plan = plan_fleet(FleetSpec.model_validate(FLEET), load_inventory(tmp_path / "inventory.ini"))
    server = node_config(plan, plan.nodes[0], "secret")["model_server"]
    assert (server["host"], server["advertise"]) == ("0.0.0.0", "b1")


def test_the_kit_wheel_is_rebuilt_when_any_package_it_ships_changes() -> None:
    import re

    from provisioning.artifacts import KIT_SOURCE, SOURCE_PACKAGES

    text = (KIT_SOURCE / "pyproject.toml").read_text()
    include = text.split("[tool.setuptools.packages.find]")[1].split("include = [")[1].split("]")[0]
    shipped = set(re.findall(r'"(\w+)\*"', include))
    assert shipped == set(SOURCE_PACKAGES)  # model_store (peers, holdings) runs on the boards too
