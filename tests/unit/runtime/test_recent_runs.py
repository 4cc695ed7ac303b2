"""A re-asked run (same dispatch id) is never run twice: the node ignores it while it runs, then sends the result."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from edge_agent.backends.echo import EchoBackend
from edge_agent.runtime.node import EdgeNode, NodeSettings
from edge_agent.runtime.recent import RecentRuns
from edge_agent.runtime.worker import AgentProfile, AgentWorker
from shared.config import ConnectionSettings
from shared.messages import RunRequest, RunResult

FABRIC = "unit"
P = f"symphony/{FABRIC}"


def result(dispatch_id: str) -> RunResult:
    return RunResult(dispatch_id=dispatch_id, task_id="t1", agent_id="n1-echo", node_id="n1", text="x")


def test_recent_runs_tell_new_running_and_done_apart() -> None:
    recent = RecentRuns(capacity=2)
    assert recent.seen("d1") == "new"
    recent.started("d1")
    assert recent.seen("d1") == "running"
    recent.finished(result("d1"))
    assert recent.seen("d1") == result("d1")
    recent.started("d2")
    recent.started("d3")  # the oldest goes
    assert recent.seen("d1") == "new" and len(recent) == 2


def test_recent_runs_refuse_a_zero_capacity() -> None:
    with pytest.raises(ValueError, match="capacity"):
        RecentRuns(capacity=0)


class Recorder:
    def __init__(self) -> None:
        self.published: list[tuple[str, Any]] = []

    def publish(self, topic: str, message: Any, *, qos: int = 1, retain: bool = False) -> None:
        self.published.append((topic, message))


class CountingEcho(EchoBackend):
    def __init__(self) -> None:
        super().__init__(delay_s=0.05)
        self.calls = 0

    def generate(self, messages: Any, options: Any) -> Any:
        self.calls += 1
        return super().generate(messages, options)

    def stream(self, messages: Any, options: Any, sink: Any) -> Any:  # the worker streams when the backend can
        self.calls += 1
        return super().stream(messages, options, sink)


def test_a_node_runs_a_re_asked_dispatch_once_and_sends_its_result_again(tmp_path: Path) -> None:
    async def scenario() -> tuple[CountingEcho, list[tuple[str, Any]]]:
        backend = CountingEcho()
        profile = AgentProfile("n1-echo", "generalist", "You echo.", ("echo",), 2, 4, 64, 0.0, 1.0)
        node = EdgeNode(
            NodeSettings("n1", ConnectionSettings(fabric=FABRIC), tmp_path), [AgentWorker(profile, backend, "n1")]
        )
        recorder = Recorder()
        node.client = recorder  # type: ignore[assignment]
        request = RunRequest(
            dispatch_id="t1.d1", task_id="t1", agent_id="n1-echo", subtask="hi", reply_topic=f"{P}/router/r1/inbox"
        )
        topic = node.topics.agent_run("n1-echo")
        node._on_run_request(topic, request)
        node._on_run_request(topic, request)  # re-asked while it runs: ignored
        await asyncio.gather(*node._tasks)
        node._on_run_request(topic, request)  # re-asked after: the kept result again
        return backend, recorder.published

    backend, published = asyncio.run(scenario())
    results = [message for topic, message in published if topic == f"{P}/router/r1/inbox"]
    assert backend.calls == 1
    assert len(results) == 2 and results[0] == results[1] and results[0].dispatch_id == "t1.d1"
