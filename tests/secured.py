"""Test helpers for a provisioned fleet on this machine: render it, run its broker on the rendered passwords, ACL
(and TLS) files, and point its node, client and operator configs at local paths.

Used by the ACL enforcement tests and by the observe tools' tests under the rendered ACL.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import amqtt_command

from broker.mosquitto import MosquittoConfig, find_mosquitto, render_config
from broker.policy import free_port
from provisioning.render import render
from shared.config import ConnectionSettings, TLSSettings, load_node_config

INVENTORY = """
[brokers]
hub ansible_host={address}

[boards]
node-a
node-b
"""


@dataclass
class Fleet:
    """A rendered fleet: where its files are and how each account connects."""

    out: Path
    port: int

    def config_file(self, account: str) -> Path:
        """The rendered file of `account`: clients/<id>.yaml, operators/<id>.yaml or nodes/<id>/node.yaml."""
        for path in (self.out / "clients" / f"{account}.yaml", self.out / "operators" / f"{account}.yaml"):
            if path.exists():
                return path
        return self.out / "nodes" / account / "node.yaml"

    def connection(self, account: str, **changes: object) -> ConnectionSettings:
        """The account's rendered settings, with local TLS paths."""
        file = self.config_file(account)
        settings = load_node_config(file, environment=False).connection
        if settings.tls is not None:
            changes.setdefault("tls", self.local_tls(file))
        return settings.model_copy(update={"keepalive_s": 2, "connect_timeout_s": 5.0, **changes})

    def local_tls(self, file: Path) -> TLSSettings:
        folder = file.parent / "tls" if file.name == "node.yaml" else file.parent / file.stem / "tls"
        return TLSSettings(ca_file=folder / "ca.crt", cert_file=folder / "client.crt", key_file=folder / "client.key")

    def local_node_config(self, node: str, state_dir: Path) -> Path:
        """nodes/<node>/node.yaml with this machine's paths (TLS files, state), for `edge-agent start|router -c`."""
        file = self.config_file(node)
        data: dict[str, Any] = yaml.safe_load(file.read_text())
        if "tls" in data["connection"]:
            data["connection"]["tls"] = {key: str(value) for key, value in self.local_tls(file).model_dump().items()}
        data["state_dir"] = str(state_dir / node)
        if data.get("router"):
            data["router"]["state_file"] = str(state_dir / node / "router.json")
        path = self.out.parent / f"local-{node}.yaml"
        path.write_text(yaml.safe_dump(data))
        path.chmod(0o600)
        return path

    def password(self, account: str) -> str:
        passwords: dict[str, str] = yaml.safe_load((self.out / "secrets.yaml").read_text())["passwords"]
        return passwords[account]


def render_fleet(
    directory: Path,
    fabric: str,
    address: str = "127.0.0.1",
    tls: bool = False,
    kind: str = "mosquitto",
    operators: tuple[str, ...] = ("ops",),
) -> Fleet:
    port = free_port(address)
    (directory / "inventory.ini").write_text(INVENTORY.format(address=address))
    fleet = {
        "fabric": fabric,
        "broker": {"kind": kind, "hosts": ["hub"], "port": port, "bind": address, "tls": tls},
        "agents": {"boards": [{"preset": "writer", "backend": "echo"}]},
        "routers": ["hub"],
        "clients": ["alice", "bob"],
        "operators": list(operators),
    }
    (directory / "fleet.yml").write_text(yaml.safe_dump(fleet))
    render(directory / "inventory.ini", directory / "fleet.yml", directory / "out")
    return Fleet(directory / "out", port)


def mosquitto_config_file(fleet: Fleet, host: str, tls: bool = False) -> Path:
    """A mosquitto config on the rendered files; as root, mosquitto must stay root to read the 0600 files
    (on a board, the broker role hands them to the mosquitto user instead)."""
    tls_dir = fleet.out / "broker" / "tls"
    config = MosquittoConfig(
        host=host,
        port=fleet.port,
        password_file=fleet.out / "broker" / "passwd",
        acl_file=fleet.out / "broker" / "acl",
        ca_file=tls_dir / "ca.crt" if tls else None,
        cert_file=tls_dir / "server.crt" if tls else None,
        key_file=tls_dir / "server.key" if tls else None,
        require_certificate=tls,
    )
    text = render_config(config) + ("user root\n" if os.geteuid() == 0 else "")
    path = fleet.out.parent / "mosquitto.conf"
    path.write_text(text)
    return path


def broker_command(kind: str, fleet: Fleet, host: str, tls: bool = False) -> list[str]:
    """The broker process on the rendered files: mosquitto, or `edge-agent broker` as the systemd unit runs it."""
    if kind == "mosquitto":
        binary = find_mosquitto()
        if binary is None:
            pytest.skip("mosquitto is not installed (`apt-get install mosquitto`)")
        return [binary, "-c", str(mosquitto_config_file(fleet, host, tls))]
    command = amqtt_command(fleet.port)
    command[command.index("127.0.0.1")] = host
    broker_dir = fleet.out / "broker"
    command += ["--password-file", str(broker_dir / "amqtt-passwd"), "--acl-file", str(broker_dir / "amqtt-acl.yaml")]
    if tls:
        tls_dir = broker_dir / "tls"
        command += ["--tls-cert", str(tls_dir / "server.crt"), "--tls-key", str(tls_dir / "server.key")]
        command += ["--tls-ca", str(tls_dir / "ca.crt")]
    return command


@dataclass
class BrokerProcess:
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()


def start_broker(command: list[str], host: str, port: int, timeout: float = 15.0) -> BrokerProcess:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"broker exited with {process.returncode}: {error[-2000:]}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return BrokerProcess(process)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise TimeoutError(f"nothing listens on {host}:{port}")
