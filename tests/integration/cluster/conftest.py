"""A 3-node NATS server cluster with MQTT and JetStream on loopback (`broker.nats`), one process per node."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.reliability.conftest import fleet_factory  # noqa: F401 - the reliability suite's process fleet
from support import RunningBroker

from broker.nats import NatsNode, find_nats_server, render_node_config
from broker.policy import free_port


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[list[RunningBroker]]:
    """Three clustered nats-server processes; each RunningBroker's port is that node's MQTT port."""
    binary = find_nats_server()
    if binary is None:
        pytest.skip("nats-server is not installed (make system-deps)")
    nodes = [NatsNode(f"n{index}", free_port(), free_port(), free_port()) for index in range(3)]
    brokers = []
    for node in nodes:
        store = tmp_path / f"jetstream-{node.name}"
        store.mkdir()
        config = tmp_path / f"{node.name}.conf"
        config.write_text(render_node_config(node, nodes, store))
        brokers.append(RunningBroker("nats", node.mqtt_port, [binary, "-c", str(config)]))
    for broker in brokers:
        broker.start()
    yield brokers
    for broker in brokers:
        broker.stop()
