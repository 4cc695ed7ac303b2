"""`CoalescingPahoClient` on a socket pair: the packets queued in one loop pass leave in one send, unchanged.

The far end of the pair plays the broker and reads what the client wrote; the bytes must be exactly what plain
paho writes (same packets, same order), with one send instead of one per packet, and a socket that takes only part
of the buffer must get the rest on the next write, in order.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from shared.mqtt import BufferedPahoClient, CoalescingPahoClient


class CountingSocket:
    """The client's end of the pair, counting sends; `limit` caps the bytes one send takes (a full buffer)."""

    def __init__(self, sock: socket.socket, limit: int | None = None) -> None:
        self.sock = sock
        self.sends = 0
        self.limit = limit

    def send(self, data: bytes) -> int:
        self.sends += 1
        return self.sock.send(data[: self.limit] if self.limit is not None else data)

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def fileno(self) -> int:
        return self.sock.fileno()


def wired(kind: type[paho.Client], limit: int | None = None) -> tuple[paho.Client, CountingSocket, socket.socket]:
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    client = kind(CallbackAPIVersion.VERSION2, client_id="unit", protocol=paho.MQTTv311)
    client.on_socket_register_write = lambda *args: None  # an outside loop writes (as FabricClient does)
    counting = CountingSocket(ours, limit)
    client._sock = counting  # as if connected: paho writes its packets to this socket
    return client, counting, broker


@pytest.fixture
def pairs() -> Iterator[list[tuple[paho.Client, CountingSocket, socket.socket]]]:
    made: list[tuple[paho.Client, CountingSocket, socket.socket]] = []
    yield made
    for client, counting, broker in made:
        client._sock = None
        counting.sock.close()
        broker.close()


def publish_burst(client: paho.Client) -> list[paho.MQTTMessageInfo]:
    """What a routed task queues in one pass: QoS 1 and QoS 0 publishes of assorted sizes."""
    return [
        client.publish("fabric/agent/a/run", b"r" * 300, qos=1),
        client.publish("fabric/task/c/t/events", b"e" * 80, qos=0),
        client.publish("fabric/ledger/t", b"l" * 5000, qos=1, retain=True),
        client.publish("fabric/reply/c", b"", qos=1),
    ]


def received(broker: socket.socket) -> bytes:
    broker.setblocking(False)
    data = b""
    while True:
        try:
            chunk = broker.recv(1 << 20)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize("kind", [CoalescingPahoClient, BufferedPahoClient])
def test_a_burst_leaves_in_one_send_with_the_bytes_paho_writes(pairs, kind: type[paho.Client]) -> None:
    pairs.append(wired(paho.Client))
    pairs.append(wired(kind))
    (plain, plain_socket, plain_broker), (ours, our_socket, our_broker) = pairs
    publish_burst(plain)
    infos = publish_burst(ours)
    plain.loop_write()
    ours.loop_write()
    assert received(our_broker) == received(plain_broker)
    assert plain_socket.sends == 4
    assert our_socket.sends == 1
    assert infos[1].is_published()  # a QoS 0 publish is reported sent once written
    assert not infos[0].is_published()  # a QoS 1 publish waits for its PUBACK, as with paho
    assert not ours.want_write()


def test_what_a_full_socket_did_not_take_goes_next_in_order(pairs) -> None:
    pairs.append(wired(paho.Client))
    pairs.append(wired(CoalescingPahoClient, limit=350))
    (plain, _, plain_broker), (ours, our_socket, our_broker) = pairs
    publish_burst(plain)
    infos = publish_burst(ours)
    plain.loop_write()
    for _ in range(50):  # bounded: every write takes up to 350 bytes
        if not ours.want_write():
            break
        ours.loop_write()
    assert not ours.want_write()
    assert received(our_broker) == received(plain_broker)
    assert infos[1].is_published()
    assert our_socket.sends < 50


def puback(mid: int) -> bytes:
    return bytes([0x40, 0x02]) + mid.to_bytes(2, "big")


@pytest.mark.parametrize("listening", [False, True])
def test_a_puback_completes_its_publish_as_paho_does(pairs, listening: bool) -> None:
    pairs.append(wired(CoalescingPahoClient))
    client, _, broker = pairs[0]
    acknowledged: list[int] = []
    if listening:
        client.on_publish = lambda c, userdata, mid, reason, properties: acknowledged.append(mid)
    first, second = client.publish("a", b"1", qos=1), client.publish("b", b"2", qos=1)
    client.loop_write()
    broker.sendall(puback(second.mid) + puback(4242))  # the second one, then an unknown id (ignored)
    for _ in range(5):
        client.loop_read()
    assert second.is_published() and not first.is_published()
    assert list(client._out_messages) == [first.mid]
    assert acknowledged == ([second.mid] if listening else [])
