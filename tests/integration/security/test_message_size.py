"""Issue 19.7: message sizes are bounded at both brokers and in FabricClient, both ways.

The attacker streams a 64 MiB PUBLISH on task/submit over a raw socket. Before the fix both brokers relayed it
(the embedded one read all of it into memory first) to every router, whose handler decoded it. Now the broker
refuses it at its header (1 MiB payload limit, `message_size_limit`): nothing subscribed to task/submit sees it,
and the router keeps answering. FabricClient refuses to send more than its `max_payload_bytes` and drops a
larger incoming message before any handler decodes it (for brokers it does not configure).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from pathlib import Path

import pytest
from integration.security.attack import PahoPeer, Processes, bounded, connect_packet, publish_header
from support import RunningBroker, amqtt_command, connection_for, mosquitto_command

from broker.mosquitto import MosquittoConfig
from broker.policy import free_port
from shared.client import FabricTaskClient
from shared.mqtt import FabricClient, PayloadTooLarge, unique_client_id
from shared.topics import Topics

MiB = 1024 * 1024
HUGE = 64 * MiB
MARKER = b'{"kind": "marker"}'


def stream_huge_publish(port: int, topic: str, task_id: str) -> bool:
    """CONNECT, then one QoS 0 PUBLISH of HUGE bytes (a task request padded with spaces), then a small marker on
    the same connection. False when the broker closed the connection on the way (it refused the packet)."""
    head = json.dumps({"kind": "task_request", "v": 1, "task_id": task_id, "query": "q"})[:-1].encode()
    tail = b"}"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(connect_packet(f"attacker-{uuid.uuid4().hex[:6]}"))
            sock.recv(4)
            sock.sendall(publish_header(topic, HUGE) + head)
            padding = b" " * MiB
            remaining = HUGE - len(head) - len(tail)
            while remaining > 0:
                remaining -= sock.send(padding[: min(remaining, MiB)])
            sock.sendall(tail + publish_header(topic, len(MARKER)) + MARKER)
            return True
    except OSError:
        return False


async def answered(connection: object, count: int) -> int:
    async with FabricTaskClient(connection) as client:  # type: ignore[arg-type]
        replies = [await client.submit(f"What is {n} + 1?", cot_count=1, timeout_s=30) for n in range(count)]
    return sum(bool(reply.answer) for reply in replies)


def test_a_64_mib_publish_never_reaches_the_router_and_it_keeps_answering(
    any_broker: RunningBroker, fabric: str, tmp_path: Path, subprocess_env: dict[str, str]
):
    topics = Topics(fabric)
    processes = Processes(tmp_path, subprocess_env)
    common = ("--broker", any_broker.url, "--fabric", fabric)
    sniffer = PahoPeer(any_broker.port)  # subscribed where every router is
    try:
        processes.spawn("router", "router", *common, "--router-id", "r1", ready="router r1 serving")
        node = ("start", *common, "--node-id", "n1", "--backend", "echo", "--preset", "math")
        processes.spawn("n1", *node, ready="node n1 online")
        assert sniffer.start() == 0
        sniffer.subscribe(topics.task_submit())
        completed = stream_huge_publish(any_broker.port, topics.task_submit(), "huge-64mib")
        if not completed:  # the broker cut the attacker off: the marker goes on a new connection
            marker = PahoPeer(any_broker.port)
            marker.start()
            marker.client.publish(topics.task_submit(), MARKER, qos=1).wait_for_publish(10)
            marker.stop()
        deadline = time.monotonic() + 120
        while not any(size == len(MARKER) for _, size in sniffer.received) and time.monotonic() < deadline:
            time.sleep(0.1)
        sizes = [size for _, size in sniffer.received]
        later = bounded(answered(connection_for(any_broker, fabric), 3), 120)
        router_log = processes.log("router")
        alive = processes.alive("router")
    finally:
        sniffer.stop()
        processes.stop()
    print(
        f"\n[{any_broker.kind}] 64 MiB publish: attacker {'finished' if completed else 'cut off'}; "
        f"sizes relayed on task/submit {sizes}; later tasks answered {later}/3"
    )
    assert len(MARKER) in sizes, "the marker sent after the huge publish never arrived"
    assert max(sizes) < MiB, f"the broker relayed {max(sizes)} bytes"
    assert "huge-64mib" not in router_log
    assert alive and later == 3


def limit_8_mib_broker(kind: str, tmp_path: Path) -> RunningBroker:
    port = free_port()
    if kind == "amqtt":
        command = amqtt_command(port, "--message-size-limit", str(8 * MiB))
    else:
        config = MosquittoConfig(host="127.0.0.1", port=port, message_size_limit=8 * MiB)
        command = mosquitto_command(tmp_path, port, config)
    return RunningBroker(kind, port, command)


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])
def test_fabric_client_refuses_and_drops_payloads_above_its_limit(kind: str, tmp_path: Path, fabric: str):
    """On a broker that relays 8 MiB, a FabricClient (1 MiB) still neither sends nor decodes 2 MiB."""
    broker = limit_8_mib_broker(kind, tmp_path)
    broker.start()
    try:
        refused, delivered, dropped = bounded(_both_ways(broker, fabric), 60)
    finally:
        broker.stop()
    print(f"\n[{kind}] FabricClient: refused to send 2 MiB ({refused}); delivered {delivered}; dropped {dropped}")
    assert "2097152 bytes" in refused and "max_payload_bytes" in refused
    assert delivered == [len(MARKER)]  # the 2 MiB message before it never reached the handler
    assert dropped == 1


async def _both_ways(broker: RunningBroker, fabric: str) -> tuple[str, list[int], int]:
    topic = Topics(fabric).reply("victim")
    delivered: list[int] = []
    marker_arrived = asyncio.Event()

    def handler(_topic: str, payload: bytes) -> None:
        delivered.append(len(payload))
        if payload == MARKER:
            marker_arrived.set()

    client = FabricClient(connection_for(broker, fabric), unique_client_id("victim"))
    await client.subscribe(topic, handler)
    await client.connect()
    try:
        try:
            client.publish(topic, b"x" * (2 * MiB))
            refused = "sent"
        except PayloadTooLarge as error:
            refused = str(error)
        sender = PahoPeer(broker.port)
        assert await asyncio.to_thread(sender.start) == 0
        sender.client.publish(topic, b"y" * (2 * MiB), qos=1)
        sender.client.publish(topic, MARKER, qos=1)  # same connection: arrives after the big one
        await asyncio.wait_for(marker_arrived.wait(), 30)
        await asyncio.to_thread(sender.stop)
        return refused, delivered, client.oversized_dropped
    finally:
        await client.close()
