"""The doctor's measurements (I/O): TCP and TLS to the broker, the MQTT login, ACL round trips, a node's beacon.

Each function measures and returns facts; `fleet_observe.checks` turns them into verdicts. Every wait is
bounded by an argument.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import uuid
from dataclasses import dataclass, field

from shared import topics as routes
from shared.config import BrokerURL, ConnectionSettings
from shared.errors import TransportError
from shared.messages import NodeBeacon, NodeState
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

RETAINED_WAIT_S = 0.5


async def tcp_error(url: BrokerURL, timeout_s: float) -> str | None:
    """None when a TCP connection to the broker opens, else why not."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(url.host, url.port), timeout_s)
    except asyncio.TimeoutError:
        return f"no answer from {url.host}:{url.port} within {timeout_s:g} s"
    except OSError as error:
        return error.strerror or str(error)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


async def tls_error(url: BrokerURL, connection: ConnectionSettings, timeout_s: float) -> tuple[str | None, str]:
    """(None, TLS version) when the handshake and certificate check succeed, else (why not, "")."""
    tls = connection.tls
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls and tls.ca_file else None)
        if tls and tls.cert_file:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    except (OSError, ssl.SSLError) as error:
        return f"cannot load the TLS files: {error}", ""
    if tls and tls.insecure:
        context.check_hostname = False
    try:
        opened = asyncio.open_connection(url.host, url.port, ssl=context, server_hostname=url.host)
        _, writer = await asyncio.wait_for(opened, timeout_s)
    except asyncio.TimeoutError:
        return f"no TLS handshake within {timeout_s:g} s", ""
    except (ssl.SSLError, ssl.CertificateError, OSError) as error:
        return str(error), ""
    ssl_object = writer.get_extra_info("ssl_object")
    version = ssl_object.version() if ssl_object is not None else ""
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return None, version or ""


async def login(connection: ConnectionSettings, timeout_s: float) -> tuple[FabricClient | None, str | None]:
    """A connected client, or None and the broker's refusal (or silence)."""
    client = FabricClient(connection, unique_client_id("doctor"))
    try:
        await client.connect(timeout=timeout_s)
    except TransportError as error:
        return None, str(error)
    return client, None


async def echo(client: FabricClient, topic: str, timeout_s: float) -> tuple[bool, float | None]:
    """Subscribe to `topic`, publish a probe there and wait for it: (came back, round trip in ms)."""
    nonce = uuid.uuid4().hex.encode()
    arrived = asyncio.get_running_loop().create_future()

    def on_message(_topic: str, payload: bytes) -> None:
        if nonce in payload and not arrived.done():
            arrived.set_result(time.perf_counter())

    await client.subscribe(topic, on_message)  # raw, not a typed route: the probe is no fabric message
    started = time.perf_counter()
    await client.publish_confirmed(topic, b'{"kind":"doctor_probe","nonce":"' + nonce + b'"}', timeout=timeout_s)
    try:
        finished = await asyncio.wait_for(arrived, timeout_s)
    except asyncio.TimeoutError:
        return False, None
    finally:
        await client.unsubscribe(topic)
    return True, (finished - started) * 1000


@dataclass
class NodeObservation:
    """What the fabric says about one node id: its retained beacon and the states seen while watching."""

    beacon: NodeBeacon | None = None
    state_epochs: set[int] = field(default_factory=set)
    own_state: tuple[NodeState, float] | None = None
    other_state: tuple[NodeState, float] | None = None

    @property
    def alive(self) -> bool:
        return self.beacon is not None and self.beacon.epoch in self.state_epochs

    def clock_sample(self) -> tuple[NodeState, float] | None:
        return self.own_state or self.other_state


async def observe_node(client: FabricClient, topics: Topics, node_id: str, wait_s: float) -> NodeObservation:
    """Read the retained beacon of `node_id`, then watch states (ours, else any node's) for up to `wait_s`."""
    seen = NodeObservation()
    progress = asyncio.Event()
    own_topic = topics.state(node_id)

    def on_beacon(_topic: str, beacon: NodeBeacon | None) -> None:
        seen.beacon = beacon
        progress.set()

    def on_state(topic: str, state: NodeState) -> None:  # (our own ACL probes are dropped by the route)
        if topic == own_topic:
            seen.state_epochs.add(state.epoch)
            seen.own_state = (state, time.time())
        elif seen.other_state is None:
            seen.other_state = (state, time.time())
        progress.set()

    await client.route(routes.BEACON.on(topics, node_id), on_beacon, on_clear=lambda topic: on_beacon(topic, None))
    await client.route(routes.STATES.on(topics), on_state, qos=0)
    loop = asyncio.get_running_loop()
    await asyncio.sleep(RETAINED_WAIT_S)
    deadline = loop.time() + wait_s
    while loop.time() < deadline and not _enough(seen):
        progress.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(progress.wait(), deadline - loop.time())
    return seen


def _enough(seen: NodeObservation) -> bool:
    """Our node's state settles both liveness and clock; without a live beacon any node's state will do."""
    if seen.beacon is not None and seen.beacon.status == "online":
        return seen.own_state is not None
    return seen.other_state is not None or seen.own_state is not None


@dataclass
class FabricObservation:
    """What an operator account could read within the wait: node ids with a beacon or a state, router ids."""

    beacons: set[str] = field(default_factory=set)
    states: set[str] = field(default_factory=set)
    routers: set[str] = field(default_factory=set)


async def observe_fabric(client: FabricClient, topics: Topics, wait_s: float) -> FabricObservation:
    """Subscribe to beacons, states and router presences (what an operator may read) and collect ids for
    `wait_s` seconds, or until every node that has an online beacon has also sent a state."""
    seen = FabricObservation()
    online: set[str] = set()
    progress = asyncio.Event()

    def on_beacon(_topic: str, beacon: NodeBeacon) -> None:
        seen.beacons.add(beacon.node_id)
        if beacon.status == "online":
            online.add(beacon.node_id)
        progress.set()

    def on_state(_topic: str, state: NodeState) -> None:
        seen.states.add(state.node_id)
        progress.set()

    def on_presence(topic: str, payload: bytes) -> None:
        if payload:
            seen.routers.add(topics.last_level(topic))

    await client.route(routes.BEACONS.on(topics), on_beacon)
    await client.route(routes.STATES.on(topics), on_state, qos=0)
    # Raw, not a typed route: the check is what the account may read, so any presence counts, decoded or not.
    await client.subscribe(topics.router_presences(), on_presence)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    await asyncio.sleep(min(RETAINED_WAIT_S, wait_s))
    while loop.time() < deadline and not (online and online <= seen.states):
        progress.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(progress.wait(), deadline - loop.time())
    return seen
