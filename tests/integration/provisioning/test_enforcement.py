"""Both brokers enforce the rendered credentials and topic ACL (DESIGN §7).

Each broker runs as a process on the files `provisioning.render` wrote: amqtt as `edge-agent broker
--password-file --acl-file`, mosquitto with a config on the rendered passwd/acl (and TLS) files. Clients connect
with the rendered node.yaml / clients/<id>.yaml settings.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from support import amqtt_command

from broker.mosquitto import MosquittoConfig, find_mosquitto, render_config
from broker.policy import free_port
from provisioning.certificates import new_ca
from provisioning.render import render
from shared.config import ConnectionSettings, TLSSettings, load_node_config
from shared.errors import TransportError
from shared.mqtt import FabricClient, WillMessage, unique_client_id
from shared.topics import Topics

SETTLE_S = 0.3
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

    def connection(self, account: str, **changes: object) -> ConnectionSettings:
        """The account's rendered settings (node.yaml or clients/<id>.yaml), with local TLS paths."""
        path = self.out / ("clients" if (self.out / "clients" / f"{account}.yaml").exists() else "nodes")
        file = path / f"{account}.yaml" if path.name == "clients" else path / account / "node.yaml"
        settings = load_node_config(file, environ={}).connection
        if settings.tls is not None:
            folder = self.out / ("clients" if path.name == "clients" else "nodes") / account / "tls"
            changes.setdefault(
                "tls",
                TLSSettings(ca_file=folder / "ca.crt", cert_file=folder / "client.crt", key_file=folder / "client.key"),
            )
        return settings.model_copy(update={"keepalive_s": 2, "connect_timeout_s": 5.0, **changes})

    def password(self, account: str) -> str:
        passwords: dict[str, str] = yaml.safe_load((self.out / "secrets.yaml").read_text())["passwords"]
        return passwords[account]


def render_fleet(directory: Path, fabric: str, address: str = "127.0.0.1", tls: bool = False) -> Fleet:
    port = free_port(address)
    (directory / "inventory.ini").write_text(INVENTORY.format(address=address))
    fleet = {
        "fabric": fabric,
        "broker": {"kind": "mosquitto", "hosts": ["hub"], "port": port, "bind": address, "tls": tls},
        "agents": {"boards": [{"preset": "writer", "backend": "echo"}]},
        "routers": ["hub"],
        "clients": ["alice", "bob"],
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
    if kind == "mosquitto":
        binary = find_mosquitto()
        if binary is None:
            pytest.skip("mosquitto is not installed (`apt-get install mosquitto`)")
        return [binary, "-c", str(mosquitto_config_file(fleet, host, tls))]
    command = amqtt_command(fleet.port)
    command[command.index("127.0.0.1")] = host
    broker_dir = fleet.out / "broker"
    return [
        *command,
        "--password-file",
        str(broker_dir / "amqtt-passwd"),
        "--acl-file",
        str(broker_dir / "amqtt-acl.yaml"),
    ]


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


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (from `hostname -I`), or None."""
    try:
        words = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    for word in words:
        if "." in word and not word.startswith("127."):
            try:
                with socket.socket() as probe:
                    probe.bind((word, 0))
                return word
            except OSError:
                continue
    return None


@pytest.fixture(params=["amqtt", "mosquitto"])
def secured(request: pytest.FixtureRequest, tmp_path: Path, fabric: str) -> Iterator[Fleet]:
    """A rendered fleet whose broker (each kind in turn) enforces the rendered passwords and ACL."""
    fleet = render_fleet(tmp_path, fabric)
    broker = start_broker(broker_command(request.param, fleet, "127.0.0.1"), "127.0.0.1", fleet.port)
    yield fleet
    broker.stop()


def run(coroutine: Coroutine[Any, Any, None], timeout: float = 60.0) -> None:
    asyncio.run(asyncio.wait_for(coroutine, timeout))


async def connected(settings: ConnectionSettings, client_id: str | None = None) -> FabricClient:
    client = FabricClient(settings, client_id or unique_client_id(settings.username or "anonymous"))
    await client.connect()
    return client


async def receiver(
    settings: ConnectionSettings, topic_filter: str, client_id: str | None = None
) -> tuple[FabricClient, list[str]]:
    received: list[str] = []
    client = await connected(settings, client_id)
    await client.subscribe(topic_filter, lambda topic, payload: received.append(topic))
    return client, received


async def eventually(condition: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition() and asyncio.get_running_loop().time() < deadline:  # type: ignore[operator]
        await asyncio.sleep(0.02)


def test_a_node_cannot_publish_another_nodes_beacon(secured: Fleet) -> None:
    run(_a_node_cannot_publish_another_nodes_beacon(secured))


async def _a_node_cannot_publish_another_nodes_beacon(secured: Fleet) -> None:
    topics = Topics(secured.connection("hub").fabric)
    router, received = await receiver(secured.connection("hub"), topics.beacons())
    forger = await connected(secured.connection("node-a"))
    # Waits for the PUBACK, so the broker has handled the forged message before the marker below is sent.
    # (mosquitto 2.0.11 answers a denied QoS 1 publish with a PUBACK carrying reason code 135, which paho's 3.1.1
    # parser takes as a broken connection: the forger reconnects, hence a separate client for the marker.)
    await forger.publish_confirmed(topics.beacon("node-b"), b"forged", retain=True, timeout=2.0)
    node_a = await connected(secured.connection("node-a"))
    await node_a.publish_confirmed(topics.beacon("node-a"), b"own")
    await eventually(lambda: topics.beacon("node-a") in received)
    await asyncio.sleep(SETTLE_S)
    assert received == [topics.beacon("node-a")]
    late, late_received = await receiver(secured.connection("hub"), topics.beacons(), "late-router")
    await asyncio.sleep(SETTLE_S)
    assert topics.beacon("node-b") not in late_received  # nothing forged was retained either
    for client in (router, forger, node_a, late):
        await client.close()


def test_a_client_cannot_read_another_clients_replies(secured: Fleet) -> None:
    run(_a_client_cannot_read_another_clients_replies(secured))


async def _a_client_cannot_read_another_clients_replies(secured: Fleet) -> None:
    topics = Topics(secured.connection("hub").fabric)
    alice, alice_received = await receiver(secured.connection("alice"), topics.reply("bob"), "alice")
    await alice.subscribe(topics.reply("alice"), lambda topic, payload: alice_received.append(topic))
    bob, bob_received = await receiver(secured.connection("bob"), topics.reply("bob"), "bob")
    router = await connected(secured.connection("hub"))
    await router.publish_confirmed(topics.reply("bob"), b"for bob")
    await router.publish_confirmed(topics.reply("alice"), b"for alice")
    await eventually(lambda: alice_received and bob_received)
    await asyncio.sleep(SETTLE_S)
    assert alice_received == [topics.reply("alice")]
    assert bob_received == [topics.reply("bob")]
    for client in (alice, bob, router):
        await client.close()


def test_a_node_cannot_read_another_agents_run_topic_nor_submit_tasks(secured: Fleet) -> None:
    run(_a_node_cannot_read_another_agents_run_topic_nor_submit_tasks(secured))


async def _a_node_cannot_read_another_agents_run_topic_nor_submit_tasks(secured: Fleet) -> None:
    topics = Topics(secured.connection("hub").fabric)
    node_a, node_a_received = await receiver(secured.connection("node-a"), topics.agent_run("node-b-writer"))
    router, router_received = await receiver(secured.connection("hub"), topics.task_submit())
    await router.publish_confirmed(topics.agent_run("node-b-writer"), b"run")
    await node_a.publish_confirmed(topics.task_submit(), b"task", timeout=2.0)
    await asyncio.sleep(SETTLE_S * 2)
    assert node_a_received == [] and router_received == []
    for client in (node_a, router):
        await client.close()


def test_a_wrong_password_or_unknown_user_is_refused(secured: Fleet) -> None:
    run(_a_wrong_password_or_unknown_user_is_refused(secured))


async def _a_wrong_password_or_unknown_user_is_refused(secured: Fleet) -> None:
    for settings in (
        secured.connection("node-a", password=SecretStr("not-the-password")),
        secured.connection("node-a", username="mallory"),
        secured.connection("node-a", username=None, password=None),
    ):
        with pytest.raises(TransportError, match="refused"):
            await connected(settings)


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])
def test_anonymous_access_is_refused_on_a_network_listener(tmp_path: Path, fabric: str, kind: str) -> None:
    run(_anonymous_access_is_refused_on_a_network_listener(tmp_path, fabric, kind))


async def _anonymous_access_is_refused_on_a_network_listener(tmp_path: Path, fabric: str, kind: str) -> None:
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to bind")
    fleet = render_fleet(tmp_path, fabric, address=address)
    broker = start_broker(broker_command(kind, fleet, address), address, fleet.port)
    try:
        with pytest.raises(TransportError, match="refused"):
            await connected(fleet.connection("node-a", username=None, password=None))
        client = await connected(fleet.connection("node-a"))  # the rendered credentials work from the network
        await client.close()
    finally:
        broker.stop()


@pytest.mark.mosquitto
def test_tls_works_with_the_fleet_ca_and_fails_with_another(tmp_path: Path, fabric: str) -> None:
    run(_tls_works_with_the_fleet_ca_and_fails_with_another(tmp_path, fabric))


async def _tls_works_with_the_fleet_ca_and_fails_with_another(tmp_path: Path, fabric: str) -> None:
    fleet = render_fleet(tmp_path, fabric, tls=True)
    broker = start_broker(broker_command("mosquitto", fleet, "127.0.0.1", tls=True), "127.0.0.1", fleet.port)
    try:
        good = fleet.connection("node-a")
        assert good.brokers[0].startswith("mqtts://127.0.0.1:")
        client = await connected(good)
        await client.close()
        other_ca = tmp_path / "other-ca.crt"
        other_ca.write_bytes(new_ca("someone else").certificate)
        assert good.tls is not None
        with pytest.raises(TransportError):
            await connected(good.model_copy(update={"tls": good.tls.model_copy(update={"ca_file": other_ca})}))
        without_certificate = good.tls.model_copy(update={"cert_file": None, "key_file": None})
        with pytest.raises(TransportError):
            await connected(good.model_copy(update={"tls": without_certificate}))
    finally:
        broker.stop()


def test_the_embedded_broker_refuses_a_will_on_another_nodes_beacon(tmp_path: Path, fabric: str) -> None:
    """amqtt does not check Wills against the ACL by itself (broker/will_acl.py adds it). mosquitto 2.0.11 accepts
    such a CONNECT but drops the Will when it would send it (checked by hand with mosquitto_sub --will-topic)."""
    fleet = render_fleet(tmp_path, fabric)
    broker = start_broker(broker_command("amqtt", fleet, "127.0.0.1"), "127.0.0.1", fleet.port)
    try:
        run(_a_will_on_another_nodes_beacon_is_refused(fleet))
    finally:
        broker.stop()


async def _a_will_on_another_nodes_beacon_is_refused(fleet: Fleet) -> None:
    topics = Topics(fleet.connection("hub").fabric)
    forged = FabricClient(fleet.connection("node-a"), "forger", will=WillMessage(topics.beacon("node-b"), b"off"))
    with pytest.raises(TransportError, match="refused"):
        await forged.connect()
    own = FabricClient(fleet.connection("node-a"), "honest", will=WillMessage(topics.beacon("node-a"), b"off"))
    await own.connect()
    await own.close()
