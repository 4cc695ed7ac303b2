"""The router's view of the fabric: live nodes and agents from retained beacons and state messages.

Liveness follows Sparkplug's birth/death rule: a node's newest epoch wins, so an offline Will from an earlier
run (older epoch) never removes the current run's agents. A node whose messages stopped for longer than
`stale_after_s` is treated as gone. Pure: the caller passes the time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from router.candidates import DEFAULT_RELIABILITY, FleetIndex, LivePool
from shared.liveness import supersedes
from shared.messages import DEFAULT_MAX_PAYLOAD_BYTES, AgentInfo, NodeBeacon, NodeState, RouterPresence, decode

__all__ = ["DEFAULT_RELIABILITY", "AgentRegistry", "NodeRecord", "RouterRoster", "parse_state"]


@dataclass
class NodeRecord:
    beacon: NodeBeacon
    last_seen: float
    slots: list[int] = field(default_factory=list)
    agent_ids: frozenset[str] = frozenset()
    announced_at: float = 0.0  # when its latest online beacon (a birth or a rebirth) arrived

    @property
    def online(self) -> bool:
        return self.beacon.status == "online"


def parse_state(payload: bytes) -> NodeState:
    """A NodeState from its JSON payload, or MessageError: the generic `decode`, at a third of its cost.

    States are the router's most frequent message (one per node every few seconds). A NodeState holds only flat
    fields, so pydantic's own JSON parser bounds the nesting that `decode` walks separately; payloads naming
    NaN or Infinity (not JSON, which pydantic would accept) and failures go through `decode` for its checks
    and its error message.
    """
    if len(payload) <= DEFAULT_MAX_PAYLOAD_BYTES and b"Infinity" not in payload and b"NaN" not in payload:
        try:
            return NodeState.model_validate_json(payload)
        except ValidationError:
            pass
    return decode(payload, NodeState)  # raises MessageError saying what is wrong


class AgentRegistry:
    """Nodes and agents as the router last heard of them, indexed for screening (`router.candidates`).

    Beacons add and remove a node's agents in the index; states update their load, latency and availability
    in place. Neither walks the fleet, and `live_agents` hands screening a `LivePool` over the index.
    """

    def __init__(self, stale_after_s: float = 30.0) -> None:
        self.stale_after_s = stale_after_s
        self.nodes: dict[str, NodeRecord] = {}
        self.index = FleetIndex()

    def apply_beacon(self, beacon: NodeBeacon, now: float) -> bool:
        """Take a beacon into account; returns False when it is older than what we hold (ignored).

        An agent id that another live node holds stays that node's: a beacon cannot take it over (it could
        otherwise reroute, reprice or, going offline, remove another node's agent); once that node is offline
        or stale, the agent may move.
        """
        record = self.nodes.get(beacon.node_id)
        if not supersedes(beacon, record.beacon if record is not None else None):
            return False
        same_run = record is not None and record.online and record.beacon.epoch == beacon.epoch
        agents = [info for info in beacon.agents if not self._held_elsewhere(info.agent_id, beacon.node_id, now)]
        agent_ids = frozenset(info.agent_id for info in agents)
        if same_run and beacon.status == "online" and record is not None and record.agent_ids == agent_ids:
            record.beacon, record.last_seen = beacon, now  # a repeated birth (rebirth): keep the states
            record.announced_at = now
            self.index.touch(record.slots, now)
            return True
        if record is not None:
            self._unindex(record)
        slots = (
            [self.index.add(info, beacon.node_id, now, beacon.site) for info in agents]
            if beacon.status == "online"
            else []
        )
        self.nodes[beacon.node_id] = NodeRecord(beacon, now, slots, agent_ids, announced_at=now)
        return True

    def announced_since(self, agent_id: str, since: float) -> bool:
        """Whether the live node hosting `agent_id` announced itself online after `since` (back from a loss)."""
        slot = self.index.slot(agent_id)
        record = self.nodes.get(self.index.node_ids[slot]) if slot is not None else None
        return record is not None and record.online and record.announced_at > since

    def forget_node(self, node_id: str) -> None:
        """The node was decommissioned (its retained beacon was cleared)."""
        record = self.nodes.pop(node_id, None)
        if record is not None:
            self._unindex(record)

    def apply_state(self, state: NodeState, now: float) -> bool:
        record = self.nodes.get(state.node_id)
        if record is None or record.beacon.epoch != state.epoch or not record.online:
            return False
        record.last_seen = now
        self.index.touch(record.slots, now)
        for agent in state.agents:
            if agent.agent_id in record.agent_ids:
                self.index.update(agent.agent_id, agent.load, agent.latency_ema_ms, agent.available)
        return True

    def is_live(self, record: NodeRecord, now: float) -> bool:
        return record.online and now - record.last_seen <= self.stale_after_s

    def live_agents(self, now: float, reliability: Mapping[str, float] | None = None) -> LivePool:
        """Every agent of every live node, with its latest dynamic state (views are built on demand)."""
        return LivePool(self.index, now, self.stale_after_s, reliability or {})

    def agent_ids_of(self, node_id: str) -> set[str]:
        """The agents the node holds (those of its beacon that no other live node held when it came)."""
        record = self.nodes.get(node_id)
        return set(record.agent_ids) if record else set()

    def _held_elsewhere(self, agent_id: str, node_id: str, now: float) -> bool:
        slot = self.index.slot(agent_id)
        if slot is None or self.index.node_ids[slot] == node_id:
            return False
        holder = self.nodes.get(self.index.node_ids[slot])
        return holder is not None and self.is_live(holder, now)

    def agent_info(self, agent_id: str) -> AgentInfo | None:
        slot = self.index.slot(agent_id)
        if slot is not None:
            return self.index.infos[slot]
        for record in self.nodes.values():  # an agent of an offline node
            for info in record.beacon.agents:
                if info.agent_id == agent_id:
                    return info
        return None

    def _unindex(self, record: NodeRecord) -> None:
        node_id = record.beacon.node_id
        for agent_id in record.agent_ids:
            slot = self.index.slot(agent_id)
            if slot is not None and self.index.node_ids[slot] == node_id:  # not since taken over by another node
                self.index.remove(agent_id)
        record.slots = []


class RouterRoster:
    """Live routers from their retained presence messages (newest epoch wins, as for nodes)."""

    def __init__(self) -> None:
        self.presences: dict[str, RouterPresence] = {}

    def apply(self, presence: RouterPresence) -> None:
        current = self.presences.get(presence.router_id)
        if current is not None and presence.epoch < current.epoch:
            return
        self.presences[presence.router_id] = presence

    def forget(self, router_id: str) -> None:
        self.presences.pop(router_id, None)

    def live(self) -> list[str]:
        return sorted(router_id for router_id, p in self.presences.items() if p.status == "online")
