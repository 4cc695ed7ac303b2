"""Several brokers, one fabric: which topics a mosquitto bridge carries, in which direction, and its config lines.

The topology is a star. One hub broker (or a failover list of hubs) sits in the middle; each site broker runs a
bridge to the hub, and nothing else connects brokers. A star has no cycles, and with `try_private` the hub knows
the bridge is a bridge and never sends a message back to the bridge it came from, so no message loops.

A fabric topic is bridged in the direction its messages flow (`FLOWS`): out of a site (site -> hub) when the site
hosts a publisher of the topic and a subscriber lives elsewhere, into it (hub -> site) when the site hosts a
subscriber and a publisher lives elsewhere, `both` when both hold. "Elsewhere" is the hub and every other site
together: a component whose site broker is down fails over to the hub, and the hub is where all flows meet.
Observers (operators, dashboards, `edge-agent status`) may watch from any broker, so beacons, node states, router
presences and task events reach every broker. Traffic that stays inside a site (a router at site B running
agents at site B) never crosses the bridge.

With `wan: summaries` (docs/sites.md), a site whose router summarises it bridges its summary instead of its
boards' beacons and states, and runs and results only by exact topic (`summarised_bridge_topics`).

Retained beacons and presences propagate: mosquitto sends a site's retained messages on the bridged `out` topics
to the hub whenever the bridge (re)connects, so a restarted hub learns the whole fleet again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shared.topics import Topics, site_agent_id

Role = Literal["node", "agent", "router", "client", "observer"]
Direction = Literal["out", "in", "both"]
ALL_ROLES: frozenset[Role] = frozenset({"node", "agent", "router", "client", "observer"})
BRIDGE_QOS = 1


@dataclass(frozen=True)
class Flow:
    """A fabric topic filter, who publishes on it and who subscribes to it."""

    name: str
    publishers: frozenset[Role]
    subscribers: frozenset[Role]


def flows(topics: Topics) -> tuple[tuple[str, Flow], ...]:
    """(topic filter, flow) for every topic of the fabric (DESIGN §3)."""
    p = topics.prefix

    def flow(name: str, publishers: set[Role], subscribers: set[Role]) -> Flow:
        return Flow(name, frozenset(publishers), frozenset(subscribers))

    return (
        (topics.beacons(), flow("beacons", {"node"}, {"node", "router", "observer"})),
        (topics.states(), flow("states", {"node"}, {"node", "router", "observer"})),
        (topics.router_presences(), flow("presences", {"router"}, {"router", "client", "observer"})),
        (f"{p}/router/+/inbox", flow("results", {"agent"}, {"router"})),
        (f"{p}/router/+/bids", flow("bids", {"agent"}, {"router"})),
        (topics.bid_request(), flow("bid requests", {"router"}, {"agent"})),
        (topics.rebirth(), flow("rebirth requests", {"router"}, {"node"})),
        (f"{p}/agent/+/run", flow("runs", {"router"}, {"agent"})),
        (topics.task_submissions(), flow("submissions", {"client"}, {"router"})),
        (topics.all_task_events(), flow("events", {"router"}, {"client", "observer"})),
        (f"{p}/reply/+", flow("replies", {"router"}, {"client"})),
        (topics.ledgers(), flow("ledger", {"router"}, {"router"})),
        (topics.trace_requests(), flow("trace requests", {"observer"}, {"router"})),
        (topics.desireds(), flow("desired states", {"observer"}, {"node", "observer"})),  # operators write them
        (topics.controls(), flow("operator orders", {"observer"}, {"node", "observer"})),
    )


@dataclass(frozen=True)
class BridgeTopic:
    pattern: str
    direction: Direction


def bridge_topics(topics: Topics, here: Iterable[Role], elsewhere: Iterable[Role]) -> tuple[BridgeTopic, ...]:
    """The topics a site's bridge carries: `here` are the roles at the site, `elsewhere` those at the hub and the
    other sites (observers are everywhere and added to both)."""
    local = frozenset(here) | {"observer"}
    remote = frozenset(elsewhere) | {"observer"}
    bridged = []
    for pattern, flow in flows(topics):
        out = bool(flow.publishers & local) and bool(flow.subscribers & remote)
        into = bool(flow.subscribers & local) and bool(flow.publishers & remote)
        if out or into:
            bridged.append(BridgeTopic(pattern, "both" if out and into else "out" if out else "in"))
    return tuple(bridged)


def site_bridges(
    topics: Topics, hub: Iterable[Role], sites: Mapping[str, Iterable[Role]]
) -> dict[str, tuple[BridgeTopic, ...]]:
    """{site: its bridge topics} for a hub and sites with the given roles."""
    roles = {name: frozenset(site) for name, site in sites.items()}
    result: dict[str, tuple[BridgeTopic, ...]] = {}
    for name, here in roles.items():
        elsewhere = set(hub).union(*(other for other_name, other in roles.items() if other_name != name))
        result[name] = bridge_topics(topics, here, elsewhere)
    return result


@dataclass(frozen=True)
class BridgeTLS:
    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class Bridge:
    """One mosquitto bridge connection from this broker to the hub (`addresses`: the hub, then its failovers)."""

    name: str
    addresses: tuple[tuple[str, int], ...]
    topics: tuple[BridgeTopic, ...]
    username: str | None = None
    password: str | None = None
    tls: BridgeTLS | None = None
    keepalive_s: int = 10


def bridge_lines(bridge: Bridge) -> list[str]:
    """mosquitto.conf lines for `bridge` (see mosquitto.conf(5), "Configuring Bridges")."""
    addresses = " ".join(f"{host}:{port}" for host, port in bridge.addresses)
    lines = [
        "",
        f"connection {bridge.name}",
        f"address {addresses}",
        f"remote_clientid {bridge.name}",
        f"local_clientid {bridge.name}.local",
        "bridge_protocol_version mqttv311",
        "try_private true",  # the hub knows a bridge: no echo back to it (no loops), retained flags kept
        "cleansession true",  # after a reconnect the bridge resubscribes; mosquitto resends the retained messages
        "notifications false",  # no $SYS state topics outside the fabric's ACL
        "start_type automatic",
        "restart_timeout 1 5",  # back off from 1 s up to 5 s while the hub is away
        f"keepalive_interval {bridge.keepalive_s}",
        "round_robin false",  # the first address is the hub; later ones are its failovers (and it comes back)
    ]
    if bridge.username is not None:
        lines.append(f"remote_username {bridge.username}")
    if bridge.password is not None:
        lines.append(f"remote_password {bridge.password}")
    if bridge.tls is not None:
        lines += [
            f"bridge_cafile {bridge.tls.ca_file}",
            f"bridge_certfile {bridge.tls.cert_file}",
            f"bridge_keyfile {bridge.tls.key_file}",
            "bridge_insecure false",
        ]
    lines += [f"topic {topic.pattern} {topic.direction} {BRIDGE_QOS}" for topic in bridge.topics]
    return lines


@dataclass(frozen=True)
class SummarisedSite:
    """What the bridge of a site whose router summarises it (`wan: summaries`) needs to know by name."""

    site: str
    other_sites: tuple[str, ...] = ()  # the other summarised sites (reached through their site agents)
    routers_here: tuple[str, ...] = ()
    routers_elsewhere: tuple[str, ...] = ()
    agents_elsewhere: tuple[str, ...] = ()  # agents in places without a site router (run directly)
    nodes_elsewhere: bool = False  # nodes in places without a site router (their beacons and states come in)


def summarised_bridge_topics(
    topics: Topics, here: Iterable[Role], elsewhere: Iterable[Role], layout: SummarisedSite
) -> tuple[BridgeTopic, ...]:
    """The topics of a summarised site's bridge: its summary instead of its boards' beacons and states.

    Beacons and states never leave the site (they may come in from places without a site router). Runs and
    results cross only by exact topic: runs to the other sites' site agents and to agents without a site router
    go out, runs to this site's agent come in; results go out to routers elsewhere and come in to this site's
    routers. So a run this site's router sends to its own board, and the board's result, stay inside the site.
    """
    p = topics.prefix
    general = bridge_topics(topics, here, elsewhere)
    detailed = {topics.beacons(), topics.states(), f"{p}/agent/+/run", f"{p}/router/+/inbox"}
    bridged = [topic for topic in general if topic.pattern not in detailed]
    for topic in general:
        if topic.pattern in (topics.beacons(), topics.states()) and topic.direction in ("in", "both"):
            if not layout.nodes_elsewhere:
                continue
            bridged.append(BridgeTopic(topic.pattern, "in"))
    bridged.append(BridgeTopic(topics.site_summaries(), "both"))
    bridged.append(BridgeTopic(topics.agent_run(site_agent_id(layout.site)), "in"))
    bridged += [BridgeTopic(topics.agent_run(site_agent_id(site)), "out") for site in layout.other_sites]
    bridged += [BridgeTopic(topics.agent_run(agent_id), "out") for agent_id in layout.agents_elsewhere]
    bridged += [BridgeTopic(topics.router_inbox(router_id), "out") for router_id in layout.routers_elsewhere]
    bridged += [BridgeTopic(topics.router_inbox(router_id), "in") for router_id in layout.routers_here]
    return tuple(dict.fromkeys(bridged))
