"""A NATS server cluster with MQTT and JetStream (Debian package `nats-server`), as the fabric's broker.

Each node of the cluster gets its own config: a server name, a JetStream store, the cluster routes to the other
nodes, and an `mqtt { listen }` port that agents, routers and clients connect to (any node serves any client;
retained messages and sessions live in replicated JetStream streams). Used by the cluster tests and by
operators who want a sketch of the config (README, "Clustered brokers").

Components on such a cluster should set `connection: {subscribe_qos: 0}`: a QoS 1 subscription is a replicated
JetStream consumer that delivers nothing while its leader is re-elected after a server's death, a QoS 0 one is a
plain NATS subscription.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CLUSTER_NAME = "symphony"


@dataclass(frozen=True)
class NatsNode:
    """One server of the cluster: its name and the ports it listens on (loopback unless `host` says otherwise)."""

    name: str
    client_port: int
    cluster_port: int
    mqtt_port: int
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"NATS server name {self.name!r} must be letters, digits, - or _")
        for port in (self.client_port, self.cluster_port, self.mqtt_port):
            if not 0 < port < 65536:
                raise ValueError(f"port {port} of NATS server {self.name} is not in 1..65535")

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://{self.host}:{self.mqtt_port}"


def find_nats_server() -> str | None:
    """The nats-server binary (Debian installs it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("nats-server")
    if found:
        return found
    for candidate in ("/usr/sbin/nats-server", "/usr/bin/nats-server"):
        if Path(candidate).exists():
            return candidate
    return None


def render_node_config(
    node: NatsNode, cluster: Sequence[NatsNode], store_dir: Path, log_file: Path | None = None
) -> str:
    """The config of `node` in `cluster`: JetStream on, routes to every other node, MQTT on its port.

    Retained messages, sessions and the consumers behind QoS 1 subscriptions live in JetStream, replicated
    on up to 3 nodes, so they survive a node (a single-replica consumer may sit on another node than its
    client's and die with it, silently ending a subscription).
    """
    if node not in cluster:
        raise ValueError(f"{node.name} is not one of the cluster's nodes")
    routes = ",\n    ".join(f'"nats-route://{peer.host}:{peer.cluster_port}"' for peer in cluster if peer != node)
    replicas = min(3, len(cluster))
    log = f'log_file: "{log_file}"\n' if log_file is not None else ""
    return f"""{log}server_name: "{node.name}"
host: "{node.host}"
port: {node.client_port}
jetstream {{
  store_dir: "{store_dir}"
}}
cluster {{
  name: "{CLUSTER_NAME}"
  host: "{node.host}"
  port: {node.cluster_port}
  routes: [
    {routes}
  ]
}}
mqtt {{
  host: "{node.host}"
  port: {node.mqtt_port}
  stream_replicas: {replicas}
}}
"""
