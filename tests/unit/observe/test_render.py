"""Text rendering of the status table, the task list and one-line trace events."""

from __future__ import annotations

import pytest

from fleet_observe.render import ago, event_line, format_table, status_text, tasks_text
from fleet_observe.snapshot import FabricSnapshot
from shared.messages import AgentInfo, NodeBeacon, RouterPresence, TaskEvent


def test_format_table_aligns_columns_and_cuts_long_cells() -> None:
    text = format_table(("A", "LONGER"), [("x" * 50, "1"), ("yy", "22")])
    lines = text.splitlines()
    assert lines[0].index("LONGER") == lines[1].index("1") == lines[2].index("22")
    assert "…" in lines[1] and len(lines[1].split()[0]) == 40


def test_status_text_lists_agents_and_routers_and_says_when_there_are_none() -> None:
    snapshot = FabricSnapshot()
    assert "no node has announced itself" in status_text(snapshot, now=0.0)
    agent = AgentInfo(agent_id="n1-math", backend="echo", model="/models/x.gguf", max_in_flight=1)
    snapshot.apply_beacon(
        NodeBeacon(node_id="n1", epoch=7, instance_id="i", status="offline", agents=(agent,), sent_at=10.0), 10.0
    )
    snapshot.apply_presence(RouterPresence(router_id="r9", instance_id="i", epoch=1, status="online"), now=10.0)
    text = status_text(snapshot, now=75.0)
    row = next(line for line in text.splitlines() if line.startswith("n1"))
    assert row.split()[:4] == ["n1", "n1-math", "echo", "x.gguf"]
    assert "offline" in row and "1m ago" in row
    assert "0 online, 1 offline" in text
    assert any(line.startswith("r9") and "online" in line for line in text.splitlines())


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("planned", {"plan": ["a"], "skipped": True}, "1 step(s) (planning skipped)"),
        ("screened", {"subtask": 0, "candidates": [{"agent": "a", "score": 0.5, "ucb": 1.2}]}, "a score=0.5 ucb=1.2"),
        ("dispatched", {"subtask": 1, "agent": "a", "dispatch_id": "d"}, "subtask 2 -> a (d)"),
        ("dispatched", {"subtask": -1, "agent": "p", "dispatch_id": "d"}, "plan -> p (d)"),
        ("result", {"subtask": 0, "agent": "a", "answer": "51", "latency_ms": 3.0, "tokens": 9}, "'51' in 3.0 ms"),
        ("result", {"subtask": 0, "agent": "a", "error": "timeout"}, "<- a error timeout"),
        (
            "redispatched",
            {"subtask": 0, "failed_agent": "a", "error": "busy", "next_agent": "b"},
            "a failed (busy) -> b",
        ),
        ("voted", {"subtask": 0, "winner": "51", "weights": {"51": 1.0}}, "winner '51'"),
        ("voted", {"subtask": 0, "early_stop": True, "outstanding": 1}, "decided early, 1 run(s) cancelled"),
        ("rewarded", {"subtask": 0, "rewards": {"a": 0.8}}, '{"a":0.8}'),
        ("answered", {"answer": "51", "elapsed_ms": 40.0}, "'51' in 40.0 ms"),
        ("planned", {"plan": [], "chains": [{"planner": "a"}, {"planner": "b"}]}, "2 chain(s) to run, then vote"),
        ("dispatched", {"subtask": 1, "chain": 2, "agent": "a", "dispatch_id": "d"}, "chain 2 subtask 2 -> a"),
        ("rewarded", {"chain": 1, "planner": "p", "rewards": {"a": 0.8}}, 'chain 1: {"a":0.8}'),
        ("failed", {"code": "no_agents", "message": "none live"}, "no_agents: none live"),
    ],
)
def test_event_line_describes_each_event(name: str, data: dict[str, object], expected: str) -> None:
    line = event_line(TaskEvent(task_id="t", router_id="r", event=name, at=12.5, data=data), started_at=12.0)  # type: ignore[arg-type]
    assert line.startswith("  +0.500s  " + name)
    assert expected in line


def test_tasks_text_shows_status_latency_and_answer() -> None:
    snapshot = FabricSnapshot()
    snapshot.apply_event(TaskEvent(task_id="t1", router_id="r", event="received", at=1.0, data={"query": "q?"}), 1.0)
    snapshot.apply_event(
        TaskEvent(task_id="t1", router_id="r", event="answered", at=1.2, data={"answer": "4", "elapsed_ms": 200.0}), 1.2
    )
    line = tasks_text(snapshot.recent_tasks(), now=5.0).splitlines()[1]
    assert line.split()[:4] == ["t1", "answered", "200", "ms"]
    assert "'4'" in line
    assert tasks_text([], now=0.0) == "(no task seen yet)"


@pytest.mark.parametrize(
    ("seconds", "text"), [(-1.0, "0s ago"), (5.4, "5s ago"), (120.0, "2m ago"), (7200.0, "2.0h ago")]
)
def test_ago(seconds: float, text: str) -> None:
    assert ago(seconds) == text
