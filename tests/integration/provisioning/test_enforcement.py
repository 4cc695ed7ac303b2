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
import sys
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from secured import Fleet, broker_command, render_fleet, start_broker
from support import REPO

from provisioning.certificates import new_ca
from shared.config import ConnectionSettings
from shared.errors import TransportError
from shared.mqtt import FabricClient, WillMessage, unique_client_id
from shared.topics import Topics

SETTLE_S = 0.3


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
    router, router_received = await receiver(secured.connection("hub"), topics.task_submissions())
    await router.publish_confirmed(topics.agent_run("node-b-writer"), b"run")
    await node_a.publish_confirmed(topics.client_task_submit("node-a"), b"task", timeout=2.0)
    node_a_again = await connected(secured.connection("node-a"))  # a denied publish may drop the first
    await node_a_again.publish_confirmed(topics.client_task_submit("alice"), b"task", timeout=2.0)
    await asyncio.sleep(SETTLE_S * 2)
    assert node_a_received == [] and router_received == []
    for client in (node_a, node_a_again, router):
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


def test_a_client_reads_only_its_own_tasks_events_and_an_operator_reads_all(secured: Fleet) -> None:
    run(_a_client_reads_only_its_own_tasks_events(secured))


async def _a_client_reads_only_its_own_tasks_events(secured: Fleet) -> None:
    topics = Topics(secured.connection("hub").fabric)
    alice, alice_received = await receiver(secured.connection("alice"), topics.client_task_events("alice"), "alice")
    # one client per filter: a client dispatches a message to every matching filter it registered, granted or not
    snoops = [
        await receiver(secured.connection("alice"), topic_filter, f"alice-{index}")
        for index, topic_filter in enumerate([topics.client_task_events("bob"), topics.all_task_events()])
    ]
    ops, ops_received = await receiver(secured.connection("ops"), topics.all_task_events(), "ops")
    router = await connected(secured.connection("hub"))
    await router.publish_confirmed(topics.task_events("bob", "t-bob"), b"bob's query")
    await router.publish_confirmed(topics.task_events("alice", "t-alice"), b"alice's query")
    await eventually(lambda: alice_received and len(ops_received) == 2)
    await asyncio.sleep(SETTLE_S)
    assert alice_received == [topics.task_events("alice", "t-alice")]
    bob_snoop, all_snoop = (received for _, received in snoops)
    # amqtt refuses the wider subscription; mosquitto grants it but delivers only what alice may read
    assert bob_snoop == [] and topics.task_events("bob", "t-bob") not in all_snoop
    assert sorted(ops_received) == sorted([topics.task_events("alice", "t-alice"), topics.task_events("bob", "t-bob")])
    for client in (alice, ops, router, *(snoop for snoop, _ in snoops)):
        await client.close()


def test_an_operator_reads_the_fabric_but_submits_nothing(secured: Fleet) -> None:
    run(_an_operator_reads_the_fabric_but_submits_nothing(secured))


async def _an_operator_reads_the_fabric_but_submits_nothing(secured: Fleet) -> None:
    topics = Topics(secured.connection("hub").fabric)
    ops, ops_received = await receiver(secured.connection("ops"), topics.beacons(), "ops")
    for topic_filter in (topics.states(), topics.router_presences()):
        await ops.subscribe(topic_filter, lambda topic, payload: ops_received.append(topic))
    snoop, snooped = await receiver(secured.connection("ops"), topics.reply("alice"), "ops-snoop")
    router, router_received = await receiver(secured.connection("hub"), topics.task_submissions())
    node_a = await connected(secured.connection("node-a"))
    await node_a.publish_confirmed(topics.beacon("node-a"), b"beacon")
    await node_a.publish_confirmed(topics.state("node-a"), b"state")
    await router.publish_confirmed(topics.router_presence("hub"), b"presence")
    await router.publish_confirmed(topics.reply("alice"), b"alice's answer")
    submitter = await connected(secured.connection("ops"))  # a separate client: a denied publish may drop it
    await submitter.publish_confirmed(topics.client_task_submit("ops"), b"task", timeout=2.0)
    await eventually(lambda: len(ops_received) >= 3)
    await asyncio.sleep(SETTLE_S)
    assert sorted(ops_received) == sorted(
        [topics.beacon("node-a"), topics.state("node-a"), topics.router_presence("hub")]
    )
    assert router_received == [] and snooped == []
    for client in (ops, router, node_a, submitter, snoop):
        await client.close()


def test_the_embedded_broker_serves_tls_to_fleet_certificates_only(tmp_path: Path, fabric: str) -> None:
    fleet = render_fleet(tmp_path, fabric, tls=True, kind="embedded")
    broker = start_broker(broker_command("amqtt", fleet, "127.0.0.1", tls=True), "127.0.0.1", fleet.port)
    try:
        run(_tls_works_with_the_fleet_ca_only(fleet, tmp_path))
    finally:
        broker.stop()


async def _tls_works_with_the_fleet_ca_only(fleet: Fleet, tmp_path: Path) -> None:
    good = fleet.connection("alice")
    assert good.brokers[0].startswith("mqtts://127.0.0.1:") and good.tls is not None
    client = await connected(good)
    await client.close()
    plain = good.model_copy(update={"brokers": (good.brokers[0].replace("mqtts://", "mqtt://"),), "tls": None})
    with pytest.raises(TransportError):
        await connected(plain)
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes(new_ca("someone else").certificate)
    with pytest.raises(TransportError):
        await connected(good.model_copy(update={"tls": good.tls.model_copy(update={"ca_file": other_ca})}))
    without_certificate = good.tls.model_copy(update={"cert_file": None, "key_file": None})
    with pytest.raises(TransportError):
        await connected(good.model_copy(update={"tls": without_certificate}))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--tls-cert", "server.crt"], "--tls-cert and --tls-key go together"),
        (["--tls-ca", "ca.crt"], "--tls-cert and --tls-key go together"),
        (["--tls-cert", "missing.crt", "--tls-key", "missing.key"], "TLS file missing.crt does not exist"),
        (["--mosquitto", "--tls-cert", "a", "--tls-key", "b"], "--tls-* are for the embedded broker"),
    ],
)
def test_the_broker_command_explains_bad_tls_options(tmp_path: Path, arguments: list[str], message: str) -> None:
    command = [sys.executable, "-m", "edge_agent.cli", "broker", "--port", "0", *arguments]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60, env=_env())
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}
