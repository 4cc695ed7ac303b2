"""FabricSnapshot: liveness by epoch, states joined to beacons, task traces and router scores."""

from __future__ import annotations

import json

from fleet_observe.snapshot import FabricSnapshot
from shared.messages import AgentInfo, AgentState, NodeBeacon, NodeState, RouterPresence, TaskEvent


def beacon(node_id: str = "n1", epoch: int = 2, status: str = "online", sent_at: float = 100.0) -> NodeBeacon:
    agent = AgentInfo(agent_id=f"{node_id}-math", backend="echo", model="echo", max_in_flight=1, capabilities=("math",))
    return NodeBeacon(node_id=node_id, epoch=epoch, instance_id="i1", status=status, agents=(agent,), sent_at=sent_at)  # type: ignore[arg-type]


def state(node_id: str = "n1", epoch: int = 2, load: float = 0.5) -> NodeState:
    agent = AgentState(
        agent_id=f"{node_id}-math",
        load=load,
        in_flight=1,
        queue_length=0,
        latency_ema_ms=12.0,
        runs=4,
        errors=1,
        tokens_per_second=30.0,
        latency_p50_ms=10.0,
        latency_p95_ms=20.0,
    )
    return NodeState(node_id=node_id, epoch=epoch, agents=(agent,), sent_at=101.0)


def event(name: str, at: float, task_id: str = "t1", **data: object) -> TaskEvent:
    return TaskEvent(task_id=task_id, router_id="r1", event=name, at=at, data=data)  # type: ignore[arg-type]


def test_an_offline_will_of_an_older_epoch_does_not_hide_the_restarted_node() -> None:
    snapshot = FabricSnapshot()
    assert snapshot.apply_beacon(beacon(epoch=3), now=200.0)
    assert not snapshot.apply_beacon(beacon(epoch=2, status="offline"), now=201.0)
    assert [record.beacon.epoch for record in snapshot.online_nodes()] == [3]


def test_offline_is_final_for_its_epoch() -> None:
    snapshot = FabricSnapshot()
    snapshot.apply_beacon(beacon(status="offline"), now=200.0)
    assert not snapshot.apply_beacon(beacon(status="online"), now=201.0)
    assert snapshot.online_nodes() == []


def test_agent_rows_join_the_beacon_with_the_latest_state_of_the_same_epoch() -> None:
    snapshot = FabricSnapshot()
    snapshot.apply_beacon(beacon(), now=150.0)
    assert not snapshot.apply_state(state(epoch=1), now=151.0)  # a state of an older run is ignored
    assert snapshot.apply_state(state(load=0.25), now=152.0)
    [row] = snapshot.agent_rows()
    assert (row.node_id, row.agent_id, row.backend, row.capabilities) == ("n1", "n1-math", "echo", ("math",))
    assert (row.load, row.latency_ema_ms, row.tokens_per_second, row.runs, row.errors) == (0.25, 12.0, 30.0, 4, 1)
    assert row.last_seen == 152.0


def test_a_retained_beacon_is_as_old_as_its_sent_at() -> None:
    snapshot = FabricSnapshot()
    snapshot.apply_beacon(beacon(sent_at=100.0), now=5000.0)
    assert snapshot.agent_rows()[0].last_seen == 100.0


def test_every_online_node_has_state_only_counts_states_since_the_given_time() -> None:
    snapshot = FabricSnapshot()
    snapshot.apply_beacon(beacon("a"), now=150.0)
    snapshot.apply_beacon(beacon("b"), now=150.0)
    snapshot.apply_state(state("a"), now=160.0)
    assert not snapshot.every_online_node_has_state(since=155.0)
    snapshot.apply_state(state("b"), now=161.0)
    assert snapshot.every_online_node_has_state(since=155.0)


def test_decommissioned_nodes_disappear() -> None:
    snapshot = FabricSnapshot()
    snapshot.apply_beacon(beacon(), now=150.0)
    snapshot.forget_node("n1")
    assert snapshot.agent_rows() == []


def test_router_presence_keeps_the_newest_epoch() -> None:
    snapshot = FabricSnapshot()
    snapshot.apply_presence(RouterPresence(router_id="r1", instance_id="x", epoch=5, status="online"), now=10.0)
    old_will = RouterPresence(router_id="r1", instance_id="y", epoch=4, status="offline")
    assert not snapshot.apply_presence(old_will, now=11.0)
    assert [row.online for row in snapshot.router_rows()] == [True]


def test_a_task_record_follows_its_events_to_the_answer() -> None:
    snapshot = FabricSnapshot()
    snapshot.apply_event(event("received", 10.0, query="2+2?"), now=10.0)
    record = snapshot.apply_event(event("dispatched", 10.1, agent="a"), now=10.1)
    assert record.status == "running"
    assert record.latency_ms(now=10.5) == 500.0
    snapshot.apply_event(event("answered", 10.2, answer="4", elapsed_ms=201.0), now=10.2)
    assert (record.query, record.status, record.answer, record.latency_ms(now=99.0)) == ("2+2?", "answered", "4", 201.0)


def test_failed_tasks_are_marked_failed() -> None:
    snapshot = FabricSnapshot()
    record = snapshot.apply_event(event("failed", 3.0, code="no_agents"), now=3.0)
    assert (record.status, record.answer) == ("failed", "no_agents")


def test_only_the_newest_tasks_are_kept() -> None:
    snapshot = FabricSnapshot(max_tasks=3)
    for index in range(5):
        snapshot.apply_event(event("received", float(index), task_id=f"t{index}"), now=float(index))
    assert [task.task_id for task in snapshot.recent_tasks()] == ["t4", "t3", "t2"]


def test_screened_events_update_the_agent_scores() -> None:
    snapshot = FabricSnapshot()
    candidates = [{"agent": "a", "score": 0.7, "ucb": 1.5}, {"agent": "b", "score": 0.4, "ucb": 0.9}, "junk"]
    snapshot.apply_event(event("screened", 1.0, candidates=candidates), now=1.0)
    assert snapshot.scores["a"]["ucb"] == 1.5
    assert snapshot.scores["b"]["score"] == 0.4


def test_to_dict_is_json_serialisable_and_names_agents_and_routers() -> None:
    snapshot = FabricSnapshot()
    snapshot.apply_beacon(beacon(), now=150.0)
    snapshot.apply_presence(RouterPresence(router_id="r1", instance_id="x", epoch=5, status="online"), now=10.0)
    snapshot.apply_event(event("received", 1.0, query="q"), now=1.0)
    data = json.loads(json.dumps(snapshot.to_dict(now=160.0)))
    assert [agent["agent_id"] for agent in data["agents"]] == ["n1-math"]
    assert data["agents"][0]["status"] == "online"
    assert data["routers"][0]["router_id"] == "r1"
    assert data["tasks"][0]["events"][0]["event"] == "received"


def test_a_client_view_holds_only_that_clients_tasks_and_nothing_of_the_fleet() -> None:
    snapshot = FabricSnapshot()
    for client, task_id in (("alice", "t-alice"), ("bob", "t-bob"), ("", "t-unknown")):
        event = TaskEvent(task_id=task_id, router_id="r1", event="received", at=1.0, data={"query": client})
        snapshot.apply_event(event, 1.0, client)
    view = snapshot.client_view("bob", 2.0)
    assert [task["task_id"] for task in view["tasks"]] == ["t-bob"] and view["tasks"][0]["client"] == "bob"
    assert (view["view"], view["nodes"], view["agents"], view["routers"], view["scores"]) == ("client", [], [], [], {})
    assert {task["client"] for task in snapshot.to_dict(2.0)["tasks"]} == {"alice", "bob", ""}


def test_a_draining_node_is_alive_and_shown_as_draining() -> None:
    from fleet_observe.render import status_text

    snapshot = FabricSnapshot()
    snapshot.apply_beacon(beacon(), now=150.0)
    snapshot.apply_beacon(beacon(status="draining", sent_at=101.0), now=151.0)
    (row,) = snapshot.agent_rows()
    assert row.online and row.status == "draining"
    assert "draining" in status_text(snapshot, 152.0)
    assert snapshot.to_dict(152.0)["agents"][0]["status"] == "draining"
