"""A 3-node NATS server cluster with MQTT and JetStream on loopback (`broker.nats`), one process per node."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from integration.reliability.conftest import fleet_factory  # noqa: F401 - the reliability suite's process fleet
from support import RunningBroker

from broker.nats import NatsNode, find_nats_server, render_node_config
from broker.policy import free_port

_LEADER = re.compile(r"new metadata leader: (\S+)/")


@dataclass
class NatsCluster:
    nodes: list[NatsNode]
    brokers: list[RunningBroker]  # each one's port is its node's MQTT port
    logs: list[Path]
    monitor_ports: list[int]  # each server's HTTP monitoring port (`nats-server -m`)

    def metadata_leader(self, timeout_s: float = 15.0) -> int:
        """The index of the node that leads JetStream's metadata now (read from the servers' logs)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            named = [m for log in self.logs if log.exists() for m in _LEADER.findall(log.read_text(errors="replace"))]
            if named:
                return [node.name for node in self.nodes].index(named[-1])
            time.sleep(0.1)
        raise TimeoutError("no JetStream metadata leader was elected")

    def fault_roles(self) -> tuple[int, int, int]:
        """(victim, spare, leader): a node to kill that does not lead JetStream's metadata (killing the leader
        stalls every MQTT CONNECT in the cluster for ~30 s more), the other survivor, and the metadata leader."""
        leader = self.metadata_leader()
        victim, spare = [index for index in range(len(self.nodes)) if index != leader]
        return victim, spare, leader

    def url(self, index: int) -> str:
        return self.brokers[index].url

    def jetstream_consumers(self, index: int) -> int:
        """How many JetStream consumers server `index` holds (its monitoring endpoint /jsz)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_ports[index]}/jsz", timeout=5) as response:
            return int(json.load(response).get("consumers", 0))


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three clustered nats-server processes with MQTT on their own ports."""
    binary = find_nats_server()
    if binary is None:
        pytest.skip("nats-server is not installed (make system-deps)")
    nodes = [NatsNode(f"n{index}", free_port(), free_port(), free_port()) for index in range(3)]
    brokers, logs, monitor_ports = [], [], []
    for node in nodes:
        store = tmp_path / f"jetstream-{node.name}"
        store.mkdir()
        logs.append(tmp_path / f"{node.name}.log")
        config = tmp_path / f"{node.name}.conf"
        config.write_text(render_node_config(node, nodes, store, log_file=logs[-1]))
        monitor_ports.append(free_port())
        command = [binary, "-c", str(config), "-m", str(monitor_ports[-1])]
        brokers.append(RunningBroker("nats", node.mqtt_port, command))
    for broker in brokers:
        broker.start()
    yield NatsCluster(nodes, brokers, logs, monitor_ports)
    for broker in brokers:
        broker.stop()
