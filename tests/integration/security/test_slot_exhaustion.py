"""Issue 19.2: sockets that never send CONNECT must not lock the fleet out of the broker.

The attacker opens 1,000 TCP connections from one address (127.0.0.2: another host as far as the broker can
tell) and sends nothing. A legitimate component from another address (127.0.0.1) then connects. Before the fix
the embedded broker held a slot for each silent socket forever (`max_connections: 1000`, no CONNECT timeout):
the component was still refused 30 s later. Now one address may hold 32 connections that have not authenticated
(the rest are closed at once) and each has 10 s to send its CONNECT.
"""

from __future__ import annotations

import resource
import shutil
import socket
import sys
import time

import pytest
from integration.security.attack import bounded
from support import RunningBroker, amqtt_command, connection_for

from broker.mosquitto import find_mosquitto
from broker.policy import free_port
from shared.errors import TransportError
from shared.mqtt import FabricClient, unique_client_id

SILENT_SOCKETS = 1000
ATTACKER_ADDRESS = "127.0.0.2"
LOCKED_OUT_AFTER_S = 30.0  # the bound of the wait: past it the component counts as locked out


def open_silent_sockets(port: int, count: int) -> list[socket.socket]:
    """`count` connections from the attacker's address that will never send a byte, opened one after the other
    (a burst would overflow the listener's accept queue, and the kernel would drop some of them)."""
    sockets = []
    for _ in range(count):
        try:
            sockets.append(
                socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(ATTACKER_ADDRESS, 0))
            )
        except OSError:  # the broker's accept queue is full: that attempt costs the attacker, not the fleet
            continue
    return sockets


async def seconds_to_connect(broker: RunningBroker, fabric: str) -> float | None:
    """How long a component takes to connect while the silent sockets are open (None: locked out)."""
    started = time.monotonic()
    client = FabricClient(connection_for(broker, fabric), unique_client_id("node-legit"))
    try:
        await client.connect(timeout=LOCKED_OUT_AFTER_S)
    except TransportError:
        return None
    await client.close()
    return time.monotonic() - started


def test_a_thousand_silent_sockets_do_not_lock_a_component_out(any_broker: RunningBroker, fabric: str):
    sockets = open_silent_sockets(any_broker.port, SILENT_SOCKETS)
    try:
        seconds = bounded(seconds_to_connect(any_broker, fabric), LOCKED_OUT_AFTER_S + 30)
    finally:
        for sock in sockets:
            sock.close()
    shown = "locked out" if seconds is None else f"{seconds:.2f} s"
    print(f"\n[{any_broker.kind}] a component connecting past {SILENT_SOCKETS} silent sockets: {shown}")
    assert seconds is not None, f"still locked out after {LOCKED_OUT_AFTER_S:.0f} s"


def test_the_embedded_broker_closes_a_connection_that_sends_no_connect(tmp_path):
    port = free_port()
    broker = RunningBroker("amqtt", port, amqtt_command(port, "--connect-timeout", "2"))
    broker.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            started = time.monotonic()
            try:
                closed = sock.recv(1) == b""
            except (ConnectionResetError, TimeoutError):
                closed = False
            waited = time.monotonic() - started
    finally:
        broker.stop()
    print(f"\n[amqtt --connect-timeout 2] a silent connection was closed after {waited:.1f} s")
    assert closed, f"the silent connection was still open after {waited:.0f} s"


@pytest.mark.parametrize("cap", [4])
def test_one_address_holds_at_most_its_cap_of_unauthenticated_connections(cap: int):
    port = free_port()
    broker = RunningBroker("amqtt", port, amqtt_command(port, "--max-unauthenticated", str(cap)))
    broker.start()
    try:
        sockets = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(cap + 3)]
        time.sleep(1.0)
        still_open = sum(_open(sock) for sock in sockets)
        for sock in sockets:
            sock.close()
    finally:
        broker.stop()
    # at most the cap (the broker's own readiness probe may still hold one of the slots a moment)
    assert 1 <= still_open <= cap, still_open


def _open(sock: socket.socket) -> bool:
    """True while the peer has not closed the connection (nothing to read yet)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def test_mosquitto_started_by_the_kit_outlasts_more_silent_sockets_than_a_default_file_limit(
    fabric: str, subprocess_env: dict[str, str]
):
    """mosquitto has no per-address cap: each silent socket holds a file descriptor for 90 s. Under the common
    soft limit of 1,024, 1,100 of them locked every client out; `edge-agent broker --mosquitto` now lifts the soft
    limit (to the hard limit at most) before it starts mosquitto."""
    if shutil.which("prlimit") is None or find_mosquitto() is None:
        pytest.skip("needs prlimit and mosquitto")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard open-file limit ({hard}) leaves nothing to lift")
    port = free_port()
    command = ["prlimit", f"--nofile=1024:{hard if hard != resource.RLIM_INFINITY else 'unlimited'}"]
    command += [sys.executable, "-m", "edge_agent.cli", "broker", "--mosquitto", "--port", str(port)]
    broker = RunningBroker("mosquitto", port, command)
    broker.start()
    try:
        sockets = open_silent_sockets(port, 1100)
        try:
            seconds = bounded(seconds_to_connect(broker, fabric), LOCKED_OUT_AFTER_S + 30)
        finally:
            for sock in sockets:
                sock.close()
    finally:
        broker.stop()
    shown = "locked out" if seconds is None else f"{seconds:.2f} s"
    print(f"\n[edge-agent broker --mosquitto, soft limit 1,024] past {len(sockets)} silent sockets: {shown}")
    assert seconds is not None
