"""The router's view of the fabric: live nodes and agents from retained beacons and state messages.

Liveness follows Sparkplug's birth/death rule: a node's newest epoch wins, so an offline Will from an earlier
run (older epoch) never removes the current run's agents. A node whose messages stopped for longer than
`stale_after_s` is treated as gone. Pure: the caller passes the time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from router.screening import AgentView
from shared.liveness import supersedes
from shared.messages import AgentInfo, AgentState, NodeBeacon, NodeState, RouterPresence

DEFAULT_RELIABILITY = 0.5


@dataclass
class NodeRecord:
    beacon: NodeBeacon
    last_seen: float
    states: dict[str, AgentState] = field(default_factory=dict)

    @property
    def online(self) -> bool:
        return self.beacon.status == "online"


class AgentRegistry:
    """Nodes and agents as the router last heard of them."""

    def __init__(self, stale_after_s: float = 30.0) -> None:
        self.stale_after_s = stale_after_s
        self.nodes: dict[str, NodeRecord] = {}

    def apply_beacon(self, beacon: NodeBeacon, now: float) -> bool:
        """Take a beacon into account; returns False when it is older than what we hold (ignored)."""
        record = self.nodes.get(beacon.node_id)
        if not supersedes(beacon, record.beacon if record is not None else None):
            return False
        states = record.states if record is not None and record.beacon.epoch == beacon.epoch else {}
        self.nodes[beacon.node_id] = NodeRecord(beacon, now, states)
        return True

    def forget_node(self, node_id: str) -> None:
        """The node was decommissioned (its retained beacon was cleared)."""
        self.nodes.pop(node_id, None)

    def apply_state(self, state: NodeState, now: float) -> bool:
        record = self.nodes.get(state.node_id)
        if record is None or record.beacon.epoch != state.epoch or not record.online:
            return False
        record.last_seen = now
        record.states = {agent.agent_id: agent for agent in state.agents}
        return True

    def is_live(self, record: NodeRecord, now: float) -> bool:
        return record.online and now - record.last_seen <= self.stale_after_s

    def live_agents(self, now: float, reliability: dict[str, float] | None = None) -> list[AgentView]:
        """Every agent of every live node, with its latest dynamic state."""
        views = []
        for record in self.nodes.values():
            if not self.is_live(record, now):
                continue
            for info in record.beacon.agents:
                views.append(_view(record, info, reliability or {}))
        return views

    def agent_ids_of(self, node_id: str) -> set[str]:
        record = self.nodes.get(node_id)
        return {info.agent_id for info in record.beacon.agents} if record else set()

    def agent_info(self, agent_id: str) -> AgentInfo | None:
        for record in self.nodes.values():
            for info in record.beacon.agents:
                if info.agent_id == agent_id:
                    return info
        return None


def _view(record: NodeRecord, info: AgentInfo, reliability: dict[str, float]) -> AgentView:
    state = record.states.get(info.agent_id)
    return AgentView(
        agent_id=info.agent_id,
        node_id=record.beacon.node_id,
        capabilities=info.capabilities,
        persona=f"{info.persona} {info.description}".strip(),
        load=state.load if state else 0.0,
        latency_ms=state.latency_ema_ms if state else 0.0,
        available=state.available if state else True,
        reliability=reliability.get(info.agent_id, DEFAULT_RELIABILITY),
        cost_per_1k_tokens=info.cost_per_1k_tokens or 0.0,
    )


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
