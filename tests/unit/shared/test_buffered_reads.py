"""`BufferedPahoClient` on a socket pair: paho's packet reader fed from one recv, whatever the byte boundaries.

The far end of the pair plays the broker and writes PUBLISH packets (QoS 0) as raw bytes, split or batched on
purpose; the client must hand over the same messages as plain paho, with fewer recv calls.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from shared.mqtt import BufferedPahoClient


def publish_packet(topic: str, payload: bytes) -> bytes:
    """An MQTT 3.1.1 PUBLISH, QoS 0 (the test plays the broker)."""
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name + payload
    length, remaining = bytearray(), len(body)
    while True:  # the variable-length "remaining length" (1 to 4 bytes)
        digit, remaining = remaining % 128, remaining // 128
        length.append(digit | (0x80 if remaining else 0))
        if not remaining:
            return bytes([0x30]) + bytes(length) + body


class CountingSocket:
    """The client's end of the pair, counting the recv calls paho's reader makes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.recvs = 0

    def recv(self, size: int) -> bytes:
        self.recvs += 1
        return self.sock.recv(size)

    def fileno(self) -> int:
        return self.sock.fileno()


@pytest.fixture(params=[paho.Client, BufferedPahoClient], ids=["paho", "buffered"])
def wired(request: pytest.FixtureRequest) -> Iterator[tuple[paho.Client, CountingSocket, socket.socket, list]]:
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    client = request.param(CallbackAPIVersion.VERSION2, client_id="unit", protocol=paho.MQTTv311)
    received: list[tuple[str, bytes]] = []
    client.on_message = lambda c, userdata, message: received.append((message.topic, message.payload))
    counting = CountingSocket(ours)
    client._sock = counting  # as if connected: paho reads packets from this socket
    yield client, counting, broker, received
    client._sock = None
    ours.close()
    broker.close()


def read_all(client: paho.Client) -> None:
    """What FabricClient does on a readable socket: read, then drain what the buffer still holds."""
    client.loop_read()
    while isinstance(client, BufferedPahoClient) and client.buffered():
        client.loop_read()


MESSAGES = [("a/1", b"x"), ("a/2", b"y" * 300), ("a/3", b"z" * 20_000), ("a/4", b"")]


def test_several_packets_in_one_recv_arrive_whole_and_in_order(wired) -> None:
    client, counting, broker, received = wired
    broker.sendall(b"".join(publish_packet(topic, payload) for topic, payload in MESSAGES))
    for _ in range(50):  # bounded: each pass reads at least one packet until none is left
        read_all(client)
        if len(received) == len(MESSAGES):
            break
    assert received == MESSAGES
    if isinstance(client, BufferedPahoClient):
        assert counting.recvs <= 3  # paho alone: 3 or more per packet
    else:
        assert counting.recvs >= 3 * len(MESSAGES)


@pytest.mark.parametrize("split_at", [1, 2, 3, 5, 150])
def test_a_packet_split_anywhere_arrives_whole_once_its_rest_comes(wired, split_at: int) -> None:
    client, _, broker, received = wired
    packet = publish_packet("split/topic", b"p" * 200)  # 2 bytes of remaining length: split_at 2 cuts them
    broker.sendall(packet[:split_at])
    read_all(client)
    assert received == []
    broker.sendall(packet[split_at:] + publish_packet("next", b"n"))
    for _ in range(10):
        read_all(client)
        if len(received) == 2:
            break
    assert received == [("split/topic", b"p" * 200), ("next", b"n")]


def test_nothing_buffered_is_kept_for_a_new_connection() -> None:
    first, broker = socket.socketpair()
    second, broker_two = socket.socketpair()
    for sock in (first, second):
        sock.setblocking(False)
    client = BufferedPahoClient(CallbackAPIVersion.VERSION2, client_id="unit", protocol=paho.MQTTv311)
    received: list[bytes] = []
    client.on_message = lambda c, userdata, message: received.append(message.payload)
    try:
        client._sock = first
        broker.sendall(publish_packet("t", b"old") + publish_packet("t", b"lost with its connection")[:4])
        client.loop_read()
        client._sock = second  # a reconnect: the half packet of the old connection must not leak into it
        client._in_packet = {
            "command": 0,
            "have_remaining": 0,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": 0,
            "packet": bytearray(),
            "to_process": 0,
            "pos": 0,
        }
        broker_two.sendall(publish_packet("t", b"new"))
        for _ in range(5):
            client.loop_read()
        assert received == [b"old", b"new"]
    finally:
        client._sock = None
        for sock in (first, second, broker, broker_two):
            sock.close()
