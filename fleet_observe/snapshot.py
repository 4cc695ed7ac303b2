"""What an observer knows about a fabric: nodes and their agents, routers, recent tasks and their traces.

Fed one message at a time with the local receive time; never reads the clock or the network itself. Liveness
follows the router's rule (shared.liveness, DESIGN §3): the newest epoch of a node wins, so an old Will never
hides a node that restarted, and a birth sent after a Will brings a reconnected node back.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

from shared.liveness import supersedes
from shared.messages import AgentState, NodeBeacon, NodeState, RouterPresence, TaskEvent

MAX_TASKS = 50
MAX_EVENTS_PER_TASK = 200
FINAL_EVENTS = frozenset({"answered", "failed"})


@dataclass
class NodeRecord:
    beacon: NodeBeacon
    beacon_seen: float
    state: NodeState | None = None
    state_seen: float | None = None

    @property
    def online(self) -> bool:
        """Alive: online, or draining (it finishes its runs, routers send it nothing new)."""
        return self.beacon.status != "offline"

    @property
    def last_seen(self) -> float:
        return max(self.beacon_seen, self.state_seen or 0.0)


@dataclass(frozen=True)
class AgentRow:
    """One line of the status table: an agent as its beacon announced it plus its latest state."""

    node_id: str
    agent_id: str
    backend: str
    model: str
    capabilities: tuple[str, ...]
    epoch: int
    online: bool
    last_seen: float
    load: float | None = None
    in_flight: int | None = None
    latency_ema_ms: float | None = None
    tokens_per_second: float | None = None
    runs: int | None = None
    errors: int | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    status: str = ""  # the beacon's status (online, draining, offline)


@dataclass(frozen=True)
class RouterRow:
    router_id: str
    epoch: int
    online: bool
    last_seen: float


@dataclass
class TaskRecord:
    """A task seen through its trace events."""

    task_id: str
    router_id: str
    first_at: float
    events: list[TaskEvent] = field(default_factory=list)
    client: str = ""  # the submitting client account, from the event topic ("" when unknown)
    query: str = ""
    answer: str | None = None
    status: str = "running"
    elapsed_ms: float | None = None

    @property
    def last_at(self) -> float:
        return self.events[-1].at if self.events else self.first_at

    def latency_ms(self, now: float) -> float:
        """The router's elapsed time once answered, else the time since the first event."""
        if self.elapsed_ms is not None:
            return self.elapsed_ms
        end = self.last_at if self.status != "running" else now
        return max(0.0, (end - self.first_at) * 1000)


class FabricSnapshot:
    """Nodes, routers and recent tasks, updated message by message."""

    def __init__(self, max_tasks: int = MAX_TASKS) -> None:
        self.nodes: dict[str, NodeRecord] = {}
        self.routers: dict[str, tuple[RouterPresence, float]] = {}
        self.tasks: OrderedDict[str, TaskRecord] = OrderedDict()
        self.scores: dict[str, dict[str, float]] = {}
        self.max_tasks = max_tasks

    # --- feeding ------------------------------------------------------------------------------------------

    def apply_beacon(self, beacon: NodeBeacon, now: float) -> bool:
        """Take a beacon into account; False when an older epoch (or a repeated offline) is ignored."""
        record = self.nodes.get(beacon.node_id)
        if not supersedes(beacon, record.beacon if record is not None else None):
            return False
        keep_state = record is not None and record.beacon.epoch == beacon.epoch
        state, seen = (record.state, record.state_seen) if keep_state and record else (None, None)
        # A retained beacon may be days old: when it was sent says more than when we happened to receive it.
        self.nodes[beacon.node_id] = NodeRecord(beacon, min(now, beacon.sent_at or now), state, seen)
        return True

    def forget_node(self, node_id: str) -> None:
        """An empty retained beacon: the node was decommissioned."""
        self.nodes.pop(node_id, None)

    def apply_state(self, state: NodeState, now: float) -> bool:
        record = self.nodes.get(state.node_id)
        if record is None or record.beacon.epoch != state.epoch:
            return False
        record.state, record.state_seen = state, now
        return True

    def apply_presence(self, presence: RouterPresence, now: float) -> bool:
        current = self.routers.get(presence.router_id)
        if current is not None and presence.epoch < current[0].epoch:
            return False
        self.routers[presence.router_id] = (presence, min(now, presence.sent_at or now))
        return True

    def apply_event(self, event: TaskEvent, now: float, client: str = "") -> TaskRecord:
        """Add a trace event; `client` is the account whose event topic carried it (the first one sticks)."""
        record = self.tasks.get(event.task_id)
        if record is None:
            record = TaskRecord(event.task_id, event.router_id, event.at, client=client)
            self.tasks[event.task_id] = record
            while len(self.tasks) > self.max_tasks:
                self.tasks.popitem(last=False)
        if len(record.events) < MAX_EVENTS_PER_TASK:
            record.events.append(event)
        _update_task(record, event)
        if event.event == "screened":
            self._update_scores(event)
        return record

    def _update_scores(self, event: TaskEvent) -> None:
        for candidate in event.data.get("candidates") or []:
            if isinstance(candidate, dict) and isinstance(candidate.get("agent"), str):
                self.scores[candidate["agent"]] = {
                    "score": float(candidate.get("score") or 0.0),
                    "ucb": float(candidate.get("ucb") or 0.0),
                    "at": event.at,
                }

    # --- reading ------------------------------------------------------------------------------------------

    def online_nodes(self) -> list[NodeRecord]:
        return [record for record in self.nodes.values() if record.online]

    def every_online_node_has_state(self, since: float) -> bool:
        return all(r.state_seen is not None and r.state_seen >= since for r in self.online_nodes())

    def agent_rows(self) -> list[AgentRow]:
        rows = []
        for node_id in sorted(self.nodes):
            record = self.nodes[node_id]
            states = {agent.agent_id: agent for agent in record.state.agents} if record.state else {}
            for info in record.beacon.agents:
                base = AgentRow(
                    node_id=node_id,
                    agent_id=info.agent_id,
                    backend=info.backend,
                    model=info.model,
                    capabilities=info.capabilities,
                    epoch=record.beacon.epoch,
                    online=record.online,
                    last_seen=record.last_seen,
                    tokens_per_second=info.tokens_per_second,
                    status=record.beacon.status,
                )
                rows.append(_with_state(base, states.get(info.agent_id)))
        return rows

    def router_rows(self) -> list[RouterRow]:
        return [
            RouterRow(presence.router_id, presence.epoch, presence.status == "online", seen)
            for presence, seen in sorted(self.routers.values(), key=lambda item: item[0].router_id)
        ]

    def recent_tasks(self, limit: int = 10) -> list[TaskRecord]:
        """Newest first."""
        return list(reversed(self.tasks.values()))[:limit]

    def to_dict(self, now: float) -> dict[str, Any]:
        """A JSON-ready view (what `status --json` prints and the dashboard receives)."""
        return {
            "at": now,
            "nodes": [_node_dict(record) for _, record in sorted(self.nodes.items())],
            "agents": [_row_dict(row, now) for row in self.agent_rows()],
            "routers": [{**row.__dict__, "seen_ago_s": round(now - row.last_seen, 3)} for row in self.router_rows()],
            "tasks": [_task_dict(task, now) for task in self.recent_tasks(self.max_tasks)],
            "scores": self.scores,
        }

    def client_view(self, client: str, now: float) -> dict[str, Any]:
        """What one client account may see: its own tasks and their traces, nothing of the fleet or of others."""
        tasks = [task for task in self.recent_tasks(self.max_tasks) if task.client == client]
        return {
            "at": now,
            "view": "client",
            "client": client,
            "nodes": [],
            "agents": [],
            "routers": [],
            "tasks": [_task_dict(task, now) for task in tasks],
            "scores": {},
        }


def _with_state(row: AgentRow, state: AgentState | None) -> AgentRow:
    if state is None:
        return row
    return replace(
        row,
        load=state.load,
        in_flight=state.in_flight,
        latency_ema_ms=state.latency_ema_ms,
        tokens_per_second=state.tokens_per_second if state.tokens_per_second is not None else row.tokens_per_second,
        runs=state.runs,
        errors=state.errors,
        latency_p50_ms=state.latency_p50_ms,
        latency_p95_ms=state.latency_p95_ms,
    )


def _update_task(record: TaskRecord, event: TaskEvent) -> None:
    data = event.data
    if event.event == "received" and isinstance(data.get("query"), str):
        record.query = data["query"]
    elif event.event == "answered":
        record.status = "answered"
        record.answer = str(data.get("answer", ""))
        elapsed = data.get("elapsed_ms")
        record.elapsed_ms = float(elapsed) if isinstance(elapsed, (int, float)) else None
    elif event.event == "failed":
        record.status = "failed"
        record.answer = str(data.get("code", "failed"))


def _node_dict(record: NodeRecord) -> dict[str, Any]:
    beacon = record.beacon
    return {
        "node_id": beacon.node_id,
        "status": beacon.status,
        "epoch": beacon.epoch,
        "instance_id": beacon.instance_id,
        "host": beacon.host,
        "software_version": beacon.software_version,
        "agents": [agent.agent_id for agent in beacon.agents],
        "last_seen": record.last_seen,
        "state_sent_at": record.state.sent_at if record.state else None,
    }


def _row_dict(row: AgentRow, now: float) -> dict[str, Any]:
    data = dict(row.__dict__)
    data["capabilities"] = list(row.capabilities)
    data["status"] = row.status or ("online" if row.online else "offline")
    data["seen_ago_s"] = round(now - row.last_seen, 3)
    return data


def _task_dict(task: TaskRecord, now: float) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "router_id": task.router_id,
        "client": task.client,
        "query": task.query,
        "status": task.status,
        "answer": task.answer,
        "first_at": task.first_at,
        "latency_ms": round(task.latency_ms(now), 1),
        "events": [{"event": e.event, "at": e.at, "data": e.data} for e in task.events],
    }
