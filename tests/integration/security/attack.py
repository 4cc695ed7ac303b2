"""What the attacker tests share: a provisioned (password + ACL) broker of either kind, raw MQTT packets over plain
sockets, and a paho client that is nobody's FabricClient (a second account, as an attacker would use one)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from secured import Fleet, broker_command, render_fleet, start_broker
from support import REPO, stop_processes

CONNACK_ACCEPTED = 0
CONNACK_IDENTIFIER_REJECTED = 2
CONNACK_BAD_CREDENTIALS = 4
CONNACK_NOT_AUTHORIZED = 5


def bounded(coroutine: Any, timeout_s: float) -> Any:
    """Run `coroutine` in a fresh loop, failing the test past `timeout_s` instead of hanging it."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout_s))


@contextlib.contextmanager
def provisioned_broker(kind: str, directory: Path, fabric: str) -> Iterator[Fleet]:
    """A rendered fleet (clients alice and bob, nodes node-a and node-b, router on hub, operator ops) and its broker
    of `kind` running on the rendered password file and ACL."""
    fleet = render_fleet(directory, fabric, kind="mosquitto" if kind == "mosquitto" else "embedded")
    broker = start_broker(broker_command(kind, fleet, "127.0.0.1"), "127.0.0.1", fleet.port)
    try:
        yield fleet
    finally:
        broker.stop()


def _string(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(data)) + data


def _remaining_length(length: int) -> bytes:
    encoded = bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(encoded)


def connect_packet(client_id: str, username: str | None = None, password: str | None = None) -> bytes:
    """An MQTT 3.1.1 CONNECT with a clean session and a 60 s keepalive, built by hand."""
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", 60) + _string(client_id)
    body += _string(username) if username is not None else b""
    body += _string(password) if password is not None else b""
    return bytes([0x10]) + _remaining_length(len(body)) + body


def publish_header(topic: str, payload_length: int) -> bytes:
    """The start of a QoS 0 PUBLISH announcing `payload_length` bytes of payload (the payload follows)."""
    variable = _string(topic)
    return bytes([0x30]) + _remaining_length(len(variable) + payload_length) + variable


def raw_connect(port: int, packet: bytes, timeout_s: float = 10.0, source: str = "127.0.0.1") -> int | None:
    """Send `packet` (a CONNECT) on a new socket; the CONNACK return code, or None when the broker closed first."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s, source_address=(source, 0)) as sock:
        sock.sendall(packet)
        reply = _read_exactly(sock, 4)
    return None if reply is None else reply[3]


def _read_exactly(sock: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        try:
            chunk = sock.recv(count - len(data))
        except (ConnectionResetError, TimeoutError):
            return None
        if not chunk:
            return None
        data += chunk
    return data


@dataclass
class PahoPeer:
    """A plain paho client on its own network thread (the attacker's tool, or a sniffer of what the broker relays)."""

    port: int
    client_id: str = field(default_factory=lambda: f"peer-{uuid.uuid4().hex[:8]}")
    username: str | None = None
    password: str | None = None
    received: list[tuple[str, int]] = field(default_factory=list)  # (topic, payload length)
    connack: int | None = None
    disconnects: int = 0

    def __post_init__(self) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv311)
        if self.username is not None:
            self.client.username_pw_set(self.username, self.password)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, message: self.received.append((message.topic, len(message.payload)))
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.connack = reason.value

    def _on_disconnect(self, *args: Any) -> None:
        self.disconnects += 1

    def start(self, timeout_s: float = 10.0) -> int | None:
        """Connect and return the CONNACK code (None: no answer in time)."""
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        deadline = time.monotonic() + timeout_s
        while self.connack is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.connack

    def subscribe(self, topic_filter: str, timeout_s: float = 10.0) -> None:
        done = []
        self.client.on_subscribe = lambda *args: done.append(True)
        self.client.subscribe(topic_filter, qos=1)
        deadline = time.monotonic() + timeout_s
        while not done and time.monotonic() < deadline:
            time.sleep(0.02)
        assert done, f"no SUBACK for {topic_filter}"

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


START_S = 60.0


@dataclass
class Processes:
    """`edge-agent` processes started by a test (logs in files), stopped in reverse order."""

    directory: Path
    env: dict[str, str]
    running: dict[str, tuple[subprocess.Popen[bytes], Path]] = field(default_factory=dict)

    def spawn(self, name: str, *arguments: str, ready: str) -> None:
        log = self.directory / f"{name}.log"
        with log.open("wb") as sink:
            command = [sys.executable, "-m", "edge_agent.cli", *arguments]
            process = subprocess.Popen(command, env=self.env, cwd=REPO, stdout=sink, stderr=sink)
        self.running[name] = (process, log)
        deadline = time.monotonic() + START_S
        while ready not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{name} did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)

    def log(self, name: str) -> str:
        return self.running[name][1].read_text(errors="replace")

    def alive(self, name: str) -> bool:
        return self.running[name][0].poll() is None

    def stop(self) -> None:
        stop_processes(process for process, _ in reversed(self.running.values()))


@contextlib.contextmanager
def provisioned_fleet(kind: str, directory: Path, fabric: str) -> Iterator[tuple[Fleet, Processes]]:
    """The provisioned broker, the router (on hub) and one echo board (node-a), each as `edge-agent -v` runs it."""
    with provisioned_broker(kind, directory, fabric) as fleet:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "SYMPHONY_EDGE_STATE_DIR": str(directory / "state")}
        processes = Processes(directory, env)
        try:
            state = directory / "state"
            hub = str(fleet.local_node_config("hub", state))
            processes.spawn("hub", "-v", "router", "-c", hub, ready="router hub serving")
            node = str(fleet.local_node_config("node-a", state))
            processes.spawn("node-a", "-v", "start", "-c", node, ready="node node-a online")
            yield fleet, processes
        finally:
            processes.stop()
