"""Token streaming and cancel across a real broker: echo agents (in-process nodes), the router, the client.

client ─TaskRequest(stream)─► router ─RunRequest(stream)─► agent ─RunChunk…─► router ─TaskChunk…─► client
early-stopped vote / client gone ─► router ─RunCancel─► agent: the model stops within a token, the slot frees
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from support import RunningBroker, connection_for

from edge_agent.backends.echo import EchoBackend
from edge_agent.runtime.node import EdgeNode, NodeSettings
from edge_agent.runtime.worker import AgentProfile, AgentWorker
from fleet_observe.watch import FabricWatcher
from router.service import RouterConfig, RouterService
from shared.client import FabricTaskClient
from shared.config import ConnectionSettings
from shared.messages import TaskAnswer, TaskChunk, TaskEvent, decode
from shared.mqtt import FabricClient
from shared.topics import Topics

T = TypeVar("T")
LONG_QUESTION = " ".join(f"word{index}" for index in range(60)) + " what is six times seven?"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coroutine, 60))


def worker(agent_id: str, delay_s: float) -> AgentWorker:
    profile = AgentProfile(agent_id, "math", "You echo.", ("mathematical-reasoning",), 1, 4, 256, 0.0, 1.0)
    return AgentWorker(profile, EchoBackend(delay_s=delay_s, answer="42"), f"node-{agent_id}")


@contextlib.asynccontextmanager
async def echo_fabric(
    connection: ConnectionSettings, state_dir: Path, delays: dict[str, float]
) -> AsyncIterator[dict[str, AgentWorker]]:
    """One node per agent, a router that sees them all, for the duration of the block."""
    workers = {agent_id: worker(agent_id, delay) for agent_id, delay in delays.items()}
    nodes = [
        EdgeNode(NodeSettings(w.node_id, connection, state_dir, state_interval_s=1.0, duplicate_wait_s=0.1), [w])
        for w in workers.values()
    ]
    router = RouterService(RouterConfig(router_id="r1", connection=connection))
    for node in nodes:
        await node.start()
    await router.start()
    try:
        deadline = time.monotonic() + 20
        while len(router.live_agents()) < len(workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        yield workers
    finally:
        await router.stop()
        for node in nodes:
            await node.stop()


async def until(condition: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_a_single_run_streams_its_tokens_in_order_and_the_answer_follows(
    amqtt_broker: RunningBroker, fabric: str, tmp_path: Path
) -> None:
    async def scenario() -> tuple[list[TaskChunk], TaskAnswer]:
        connection = connection_for(amqtt_broker, fabric)
        async with echo_fabric(connection, tmp_path, {"a1": 0.5}), FabricTaskClient(connection) as client:
            chunks: list[TaskChunk] = []
            answer = None
            async for message in client.stream(client.request(LONG_QUESTION, cot_count=1, max_tokens=512, stream=True)):
                if isinstance(message, TaskChunk):
                    chunks.append(message)
                else:
                    answer = message
            assert answer is not None
            return chunks, answer

    chunks, answer = run(scenario())
    tokens = [chunk for chunk in chunks if chunk.phase == "token"]
    assert len(tokens) > 1
    assert [chunk.seq for chunk in chunks] == list(range(len(chunks)))
    assert "".join(chunk.text for chunk in tokens) == answer.final_text
    assert answer.answer == "42" and answer.completion_tokens > 60


def test_a_voted_task_streams_progress_then_the_voted_answer(
    amqtt_broker: RunningBroker, fabric: str, tmp_path: Path
) -> None:
    async def scenario() -> tuple[list[TaskChunk], TaskAnswer]:
        connection = connection_for(amqtt_broker, fabric)
        async with (
            echo_fabric(connection, tmp_path, {"a1": 0.0, "a2": 0.0, "a3": 0.0}),
            FabricTaskClient(connection) as c,
        ):
            messages = [
                message async for message in c.stream(c.request("what is six times seven?", cot_count=3, stream=True))
            ]
            assert isinstance(messages[-1], TaskAnswer)
            return [m for m in messages if isinstance(m, TaskChunk)], messages[-1]

    chunks, answer = run(scenario())
    assert chunks and all(chunk.phase == "progress" for chunk in chunks)
    assert any("answered '42'" in chunk.text for chunk in chunks)
    assert answer.answer == "42"


def test_an_early_stopped_vote_cancels_the_slow_run_on_its_agent(
    amqtt_broker: RunningBroker, fabric: str, tmp_path: Path
) -> None:
    async def scenario() -> tuple[TaskAnswer, AgentWorker]:
        connection = connection_for(amqtt_broker, fabric)
        async with echo_fabric(connection, tmp_path, {"fast1": 0.05, "fast2": 0.05, "slow": 20.0}) as workers:
            async with FabricTaskClient(connection) as client:
                answer = await client.submit(LONG_QUESTION, cot_count=3, max_tokens=512, timeout_s=30)
            slow = workers["slow"]
            await until(lambda: slow.in_flight == 0)  # the cancel reached it: far sooner than its 20 s
            return answer, slow

    answer, slow = run(scenario())
    assert answer.answer == "42" and len(answer.subtasks[0].ballots) == 2
    assert 0 < slow.tokens_generated < 30  # of the 64 words it would have written


def test_a_client_that_goes_away_stops_the_run_on_its_agent(
    amqtt_broker: RunningBroker, fabric: str, tmp_path: Path
) -> None:
    async def scenario() -> AgentWorker:
        connection = connection_for(amqtt_broker, fabric)
        async with echo_fabric(connection, tmp_path, {"slow": 20.0}) as workers:
            async with FabricTaskClient(connection) as client:
                stream = client.stream(client.request(LONG_QUESTION, cot_count=1, max_tokens=512, stream=True))
                async for message in stream:
                    assert isinstance(message, TaskChunk)
                    break
                await stream.aclose()
                await until(lambda: workers["slow"].in_flight == 0)
            return workers["slow"]

    assert run(scenario()).tokens_generated < 30


def test_a_task_traces_its_answer_alone_unless_its_client_follows_it(
    any_broker: RunningBroker, fabric: str, tmp_path: Path
) -> None:
    """Trace events cost the router a packet each: a task gets its full trace only when its client asks."""

    async def scenario() -> tuple[dict[str, list[str]], list[str]]:
        connection = connection_for(any_broker, fabric)
        seen: dict[str, list[str]] = {}
        followed: list[str] = []
        operator = FabricClient(connection, "operator")  # reads every task's events, as the dashboard does

        def on_event(topic: str, payload: bytes) -> None:
            event = decode(payload, TaskEvent)
            seen.setdefault(event.task_id, []).append(event.event)

        await operator.subscribe(Topics(fabric).all_task_events(), on_event)
        await operator.connect()
        try:
            async with echo_fabric(connection, tmp_path, {"a1": 0.0, "a2": 0.0}), FabricTaskClient(connection) as c:
                await c.submit("what is six times seven?", task_id="quiet", cot_count=2)
                await c.submit(
                    "what is six times seven?",
                    task_id="followed",
                    cot_count=2,
                    on_event=lambda e: followed.append(e.event),
                )
                await until(lambda: "answered" in seen.get("quiet", []) and "answered" in seen.get("followed", []))
        finally:
            await operator.close()
        return seen, followed

    seen, followed = run(scenario())
    assert seen["quiet"] == ["answered"]
    assert seen["followed"][0] == "received" and seen["followed"][-1] == "answered"
    assert {"dispatched", "result", "voted"} <= set(seen["followed"]) and followed[:2] == seen["followed"][:2]


def test_while_a_dashboard_watches_every_task_traces_in_full(
    any_broker: RunningBroker, fabric: str, tmp_path: Path
) -> None:
    """The watcher asks (a TraceRequest, QoS 0) as it starts; a task submitted once the router heard it traces in
    full. Tasks are submitted one after another until one does (bounded): the request may still be on its way."""

    async def scenario() -> list[str]:
        connection = connection_for(any_broker, fabric)
        async with echo_fabric(connection, tmp_path, {"a1": 0.0, "a2": 0.0}), FabricTaskClient(connection) as c:
            watcher = FabricWatcher(connection, task_events=Topics(fabric).all_task_events(), full_traces=True)
            await watcher.start()
            try:
                for attempt in range(20):
                    task_id = f"watched-{attempt}"
                    await c.submit("what is six times seven?", task_id=task_id, cot_count=2)
                    await until(lambda t=task_id: getattr(watcher.snapshot.tasks.get(t), "status", "") == "answered")
                    names = [event.event for event in watcher.snapshot.tasks[task_id].events]
                    if "received" in names:
                        return names
                raise AssertionError("no task traced in full while the dashboard watched")
            finally:
                await watcher.close()

    names = run(scenario())
    assert names[0] == "received" and names[-1] == "answered" and "dispatched" in names
