"""Provisioning a multi-site fleet: every component knows its site; with `wan: summaries` the bridges carry the
summaries and the site agents' runs, never a board's beacon or state, and the ACL says the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.embedded import TopicACL
from provisioning.render import render
from shared.config import load_node_config

P = "symphony/lab"
INVENTORY = """
[hubs]
hub ansible_host=10.0.0.1
[gateways]
gw-a ansible_host=10.1.0.1
gw-b ansible_host=10.2.0.1
[site_a]
board-a1 ansible_host=10.1.0.2
board-a2 ansible_host=10.1.0.3
[site_b]
board-b1 ansible_host=10.2.0.2
"""


def fleet(wan: str) -> dict[str, Any]:
    return {
        "fabric": "lab",
        "broker": {
            "hosts": ["hubs"],
            "wan": wan,
            "sites": {
                "a": {"broker": "gw-a", "members": ["site_a"], "clients": ["alice"]},
                "b": {"broker": "gw-b", "members": ["site_b"]},
            },
        },
        "agents": {
            "site_a": [{"preset": "writer", "backend": "echo"}],
            "site_b": [{"preset": "math", "backend": "echo"}],
        },
        "routers": ["board-a1", "board-b1"],
        "clients": ["alice", "bob"],
        "operators": ["ops"],
    }


def rendered(tmp_path: Path, wan: str) -> Path:
    (tmp_path / "inventory.ini").write_text(INVENTORY)
    (tmp_path / "fleet.yml").write_text(yaml.safe_dump(fleet(wan)))
    render(tmp_path / "inventory.ini", tmp_path / "fleet.yml", tmp_path / "out")
    return tmp_path / "out"


def bridge_lines(output: Path, host: str) -> set[str]:
    text = (output / "broker/hosts" / host / "mosquitto.conf").read_text()
    return {
        line.removeprefix(f"topic {P}/").removesuffix(" 1") for line in text.splitlines() if line.startswith("topic")
    }


@pytest.mark.parametrize("wan", ["full", "summaries"])
def test_every_node_and_client_knows_its_site(tmp_path: Path, wan: str) -> None:
    output = rendered(tmp_path, wan)
    assert load_node_config(output / "nodes/board-a2/node.yaml", environment=False).connection.site == "a"
    assert load_node_config(output / "nodes/board-b1/node.yaml", environment=False).connection.site == "b"
    assert yaml.safe_load((output / "clients/alice.yaml").read_text())["connection"]["site"] == "a"
    assert "site" not in yaml.safe_load((output / "clients/bob.yaml").read_text())["connection"]  # at the hub
    router = load_node_config(output / "nodes/board-a1/node.yaml", environment=False).router
    assert router is not None and router.site_summaries == (wan == "summaries")


def test_full_wan_bridges_every_beacon_and_state(tmp_path: Path) -> None:
    lines = bridge_lines(rendered(tmp_path, "full"), "gw-a")
    assert {"beacon/+ both", "state/+ both", "agent/+/run both"} <= lines
    assert not any(line.startswith("site/") for line in lines)


def test_summarised_sites_bridge_summaries_and_site_agent_runs_only(tmp_path: Path) -> None:
    output = rendered(tmp_path, "summaries")
    lines = bridge_lines(output, "gw-a")
    assert not any(line.startswith(("beacon/", "state/")) for line in lines)  # both sites have a router
    assert "site/+/summary both" in lines
    assert {"agent/site:a/run in", "agent/site:b/run out"} <= lines
    assert {"router/board-a1/inbox in", "router/board-b1/inbox out"} <= lines
    assert "agent/+/run both" not in lines and "router/+/inbox out" not in lines  # local runs stay local
    assert {"task/submit/+ both", "reply/+ both"} <= lines  # tasks and answers still cross, as before
    acl = TopicACL.load(output / "broker/amqtt-acl.yaml")
    assert f"{P}/site/a/summary" in acl.publish["board-a1"]
    assert f"{P}/site/b/summary" not in acl.publish["board-a1"]  # a router writes its own site's summary only
    assert {f"{P}/site/+/summary", f"{P}/agent/site:a/run"} <= set(acl.subscribe["board-a1"])
    assert f"{P}/agent/site:a/run" not in acl.subscribe["board-a2"]  # not a router
    assert f"{P}/site/+/summary" in acl.subscribe["ops"]
    assert f"{P}/agent/site:a/run" in acl.subscribe["bridge-a"] and f"{P}/beacon/+" not in acl.publish["bridge-a"]
