"""The router over a real broker, with echo agents and routers as processes started the way a user starts them.

    edge-agent start -c node.yaml --broker URL --fabric F     (echo agents, one or several per node)
    edge-agent router --broker URL --fabric F --router-id R
    FabricTaskClient / edge-agent submit                        (the application)

A watcher in the test subscribes to beacons, presences, run topics, task events and reply topics, so the
assertions read what crossed the fabric rather than what a component says about itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from support import RunningBroker, amqtt_command, connection_for, mosquitto_command, stop_processes

from broker.policy import free_port
from router.pipeline import FINAL_STEP_NOTE
from shared.client import FabricTaskClient
from shared.config import ConnectionSettings
from shared.errors import MessageError
from shared.messages import (
    ErrorReply,
    NodeBeacon,
    RouterPresence,
    RunRequest,
    TaskAnswer,
    TaskEvent,
    TaskOptions,
    TaskRequest,
    decode,
    encode,
)
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

T = TypeVar("T")
WAIT_S = 20.0
PLAN_QUERY = 'Solve this in two steps, then report: {"subtasks": ["add 2 and 2", "double the result"]}'


def run(coroutine: Coroutine[Any, Any, T], timeout: float = 90.0) -> T:
    """Run one scenario with an overall bound, so a hang fails instead of stalling the suite."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


# --- processes ---------------------------------------------------------------------------------------------


@dataclass
class Fleet:
    """Agent nodes and routers as child processes; logs in files so a failure can show them."""

    broker_url: str
    fabric: str
    directory: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def node(
        self, node_id: str, agents: int = 1, delay_s: float = 0.0, answer: str = "42", state_interval_s: float = 1.0
    ) -> None:
        """`edge-agent start -c node.yaml` with `agents` echo math agents (ids `{node_id}-math[-i]`)."""
        config = {
            "state_interval_s": state_interval_s,
            "connection": {"keepalive_s": 2},
            "agents": [
                {"preset": "math", "backend": "echo", "backend_settings": {"delay_s": delay_s, "answer": answer}}
                for _ in range(agents)
            ],
        }
        path = self.directory / f"{node_id}.yaml"
        path.write_text(yaml.safe_dump(config))
        self._spawn(node_id, "start", "-c", str(path), "--node-id", node_id)

    def router(self, router_id: str) -> None:
        self._spawn(router_id, "router", "--router-id", router_id)

    def _spawn(self, name: str, command: str, *arguments: str) -> None:
        log = (self.directory / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edge_agent.cli",
                command,
                "--broker",
                self.broker_url,
                "--fabric",
                self.fabric,
                *list(arguments),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        stop_processes(self.processes.values())

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.directory.glob("*.log")))


def child_env(directory: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["SYMPHONY_EDGE_STATE_DIR"] = str(directory / "state")
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --- what crossed the fabric -----------------------------------------------------------------------------


class Watcher:
    """Subscribes to the fabric and keeps every decoded message (topic, message) in arrival order."""

    def __init__(self, connection: ConnectionSettings) -> None:
        self.topics = Topics(connection.fabric)
        self.client = FabricClient(connection, unique_client_id("watch"))
        self.seen: list[tuple[str, Any]] = []
        self.raw: list[tuple[str, bytes]] = []
        self._changed = asyncio.Event()

    async def start(self) -> Watcher:
        t = self.topics
        for topic_filter in (t.beacons(), t.router_presences(), t.all_task_events(), f"{t.prefix}/reply/+"):
            await self.client.subscribe(topic_filter, self._on_message)
        await self.client.subscribe(f"{t.prefix}/agent/+/run", self._on_message)
        await self.client.connect(timeout=WAIT_S)
        return self

    async def close(self) -> None:
        await self.client.close()

    def _on_message(self, topic: str, payload: bytes) -> None:
        self.raw.append((topic, payload))
        if payload:
            try:
                self.seen.append((topic, decode(payload)))
            except MessageError:
                self.seen.append((topic, None))
        self._changed.set()

    async def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))

    def of(self, kind: type[T]) -> list[T]:
        return [message for _, message in self.seen if isinstance(message, kind)]

    def events(self, task_id: str, name: str | None = None) -> list[TaskEvent]:
        return [e for e in self.of(TaskEvent) if e.task_id == task_id and (name is None or e.event == name)]

    def runs(self, task_id: str) -> list[RunRequest]:
        """The task's runs, one per dispatch id: a re-ask (after a reconnect under load) resends the same run."""
        by_dispatch: dict[str, RunRequest] = {}
        for request in self.of(RunRequest):
            if request.task_id == task_id:
                by_dispatch.setdefault(request.dispatch_id, request)
        return list(by_dispatch.values())

    def replies(self, task_id: str) -> list[TaskAnswer | ErrorReply]:
        return [m for m in self.seen if isinstance(m[1], (TaskAnswer, ErrorReply)) and m[1].task_id == task_id]  # type: ignore[misc]

    def online_agents(self) -> set[str]:
        latest: dict[str, NodeBeacon] = {}
        for beacon in self.of(NodeBeacon):
            if beacon.node_id not in latest or beacon.epoch >= latest[beacon.node_id].epoch:
                latest[beacon.node_id] = beacon
        return {a.agent_id for b in latest.values() if b.status == "online" for a in b.agents}

    def online_routers(self) -> set[str]:
        latest: dict[str, RouterPresence] = {}
        for presence in self.of(RouterPresence):
            latest[presence.router_id] = presence
        return {router_id for router_id, p in latest.items() if p.status == "online"}

    async def wait_ready(self, agents: int, routers: set[str]) -> None:
        await self.wait_for(f"{agents} online agents", lambda: len(self.online_agents()) >= agents)
        await self.wait_for(f"routers {routers}", lambda: routers <= self.online_routers())


def dispatched_agents(watcher: Watcher, task_id: str) -> dict[int, list[str]]:
    by_subtask: dict[int, list[str]] = {}
    for event in watcher.events(task_id, "dispatched"):
        by_subtask.setdefault(event.data["subtask"], []).append(event.data["agent"])
    return by_subtask


# --- one shared fabric per broker kind (a node with four echo agents and one router) ------------------------


@dataclass
class Stack:
    broker: RunningBroker
    fleet: Fleet
    connection: ConnectionSettings


@pytest.fixture(scope="module", params=["amqtt", "mosquitto"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp(f"stack-{request.param}")
    port = free_port()
    command = amqtt_command(port) if request.param == "amqtt" else mosquitto_command(directory, port)
    broker = RunningBroker(request.param, port, command)
    broker.start()
    fabric = f"stack-{request.param}"
    fleet = Fleet(broker.url, fabric, directory, child_env(directory))
    fleet.node("shared-node", agents=4, delay_s=0.02)
    fleet.router("shared-router")
    connection = connection_for(broker, fabric)

    async def ready() -> None:
        watcher = await Watcher(connection).start()
        try:
            await watcher.wait_ready(4, {"shared-router"})
        finally:
            await watcher.close()

    try:
        run(ready())
        yield Stack(broker, fleet, connection)
    finally:
        fleet.stop()
        broker.stop()


def test_plan_and_parallel_votes_give_one_answer_with_a_full_trace(stack: Stack) -> None:
    """plan_k 2 + cot_count 3: the echo planners return the JSON plan in the query, each step runs on 3 agents."""

    async def scenario() -> None:
        watcher = await Watcher(stack.connection).start()
        async with FabricTaskClient(stack.connection) as client:
            answer = await client.submit(
                PLAN_QUERY, task_id="plan-1", plan_k=2, cot_count=3, deadline_s=20, trace="full"
            )
        await watcher.wait_for("the answered event", lambda: bool(watcher.events("plan-1", "answered")))
        await asyncio.sleep(0.3)  # a duplicate reply, if any, would arrive by now
        assert answer.answer == "42"
        assert answer.plan == ("add 2 and 2", "double the result")
        assert len(watcher.replies("plan-1")) == 1
        by_subtask = dispatched_agents(watcher, "plan-1")
        planners = by_subtask.pop(-1)  # planning runs are traced as subtask -1
        assert len(planners) == len(set(planners)) == 2
        assert sorted(by_subtask) == [0, 1]
        for agents in by_subtask.values():
            assert len(agents) == len(set(agents)) == 3
        names = {event.event for event in watcher.events("plan-1")}
        assert {"received", "planned", "screened", "dispatched", "result", "voted", "rewarded", "answered"} <= names
        solve_runs = [r for r in watcher.runs("plan-1") if r.purpose == "solve"]
        assert solve_runs and all(r.context[0] == f"Original task: {PLAN_QUERY}" for r in solve_runs)
        second_step_runs = [r for r in solve_runs if r.subtask.startswith("double the result")]
        assert second_step_runs and all("42" in r.context[1] for r in second_step_runs)
        assert all(r.subtask.endswith(FINAL_STEP_NOTE) for r in second_step_runs)  # the last step answers
        await watcher.close()

    run(scenario())


def test_chains_mode_runs_each_planners_chain_and_votes_on_their_answers(stack: Stack) -> None:
    """plan_mode chains: both planners' chains run step by step (one agent a step), their answers are voted."""

    async def scenario() -> None:
        watcher = await Watcher(stack.connection).start()
        async with FabricTaskClient(stack.connection) as client:
            answer = await client.submit(
                PLAN_QUERY, task_id="chains-1", plan_k=2, plan_mode="chains", deadline_s=20, trace="full"
            )
        await watcher.wait_for("the answered event", lambda: bool(watcher.events("chains-1", "answered")))
        assert answer.answer == "42"
        assert answer.plan == ("add 2 and 2", "double the result")
        solve_runs = [r for r in watcher.runs("chains-1") if r.purpose == "solve"]
        assert len(solve_runs) == 4  # 2 chains x 2 steps, one run each
        assert all(r.context[0] == f"Original task: {PLAN_QUERY}" for r in solve_runs)
        (vote,) = [e for e in watcher.events("chains-1", "voted") if e.data.get("subtask") == -1]
        assert set(vote.data["weights"]) == {"chain-1", "chain-2"}
        (planners,) = [e for e in watcher.events("chains-1", "rewarded") if e.data.get("subtask") == -1]
        assert len(planners.data["rewards"]) == 2
        await watcher.close()

    run(scenario())


def test_malformed_task_gets_an_error_reply_and_the_router_keeps_serving(stack: Stack) -> None:
    topics = Topics(stack.connection.fabric)
    reply_topic = topics.reply("probe-client")
    wrong_types = {
        "kind": "task_request",
        "v": 1,
        "task_id": "bad-1",
        "query": 42,
        "reply_topic": reply_topic,
        "options": {"cot_count": "many"},
    }

    async def scenario() -> None:
        watcher = await Watcher(stack.connection).start()
        publisher = FabricClient(stack.connection, unique_client_id("raw"))
        await publisher.connect(timeout=WAIT_S)
        submit = topics.client_task_submit("probe-client")  # the account in the topic: answered there, always
        await publisher.publish_confirmed(submit, b"{not json at all")
        await publisher.publish_confirmed(submit, b'{"kind": "task_request", "reply_topic": "a/#"}')
        await publisher.publish_confirmed(submit, json.dumps(wrong_types).encode())
        await watcher.wait_for("the error reply", lambda: bool(watcher.replies("bad-1")))
        errors = [(t, m) for t, m in watcher.seen if isinstance(m, ErrorReply)]
        assert {t for t, _ in errors} == {reply_topic} and {m.code for _, m in errors} == {"bad_request"}
        (error,) = [m for _, m in errors if m.task_id == "bad-1"]
        assert "query" in error.message or "cot_count" in error.message
        async with FabricTaskClient(stack.connection) as client:
            answer = await client.submit("What is 6 * 7?", task_id="good-after-bad", cot_count=3, deadline_s=20)
        assert answer.answer == "42"
        await publisher.close()
        await watcher.close()

    run(scenario())


def test_a_resent_task_id_is_replayed_without_new_runs(stack: Stack) -> None:
    async def scenario() -> None:
        watcher = await Watcher(stack.connection).start()
        async with FabricTaskClient(stack.connection) as client:
            first = await client.submit("What is 6 * 7?", task_id="replay-1", cot_count=3, deadline_s=20, trace="full")
            await watcher.wait_for("the first answer", lambda: len(watcher.replies("replay-1")) == 1)
            runs_before = len(watcher.runs("replay-1"))
            second = await client.submit("What is 6 * 7?", task_id="replay-1", cot_count=3, deadline_s=20, trace="full")
        await watcher.wait_for("the replayed answer", lambda: len(watcher.replies("replay-1")) == 2)
        await asyncio.sleep(0.3)  # runs of a wrongly re-driven task would show up by now
        assert runs_before == 3
        assert len(watcher.runs("replay-1")) == runs_before
        assert (first.replayed, second.replayed) == (False, True)
        assert second.answer == first.answer == "42"
        assert second.model_copy(update={"replayed": False}) == first
        assert len(watcher.events("replay-1", "received")) == 1
        await watcher.close()

    run(scenario())


def test_bid_selection_answers(stack: Stack) -> None:
    async def scenario() -> None:
        watcher = await Watcher(stack.connection).start()
        async with FabricTaskClient(stack.connection) as client:
            answer = await client.submit(
                "What is 6 * 7?", task_id="bid-1", selection="bid", cot_count=3, deadline_s=20, trace="full"
            )
        await watcher.wait_for("the answered event", lambda: bool(watcher.events("bid-1", "answered")))
        assert answer.answer == "42"
        bid_rounds = [e for e in watcher.events("bid-1", "screened") if "bids" in e.data]
        assert len(bid_rounds) == 1
        assert len(bid_rounds[0].data["bids"]) == 4  # every live agent bid
        assert len(set(dispatched_agents(watcher, "bid-1")[0])) == 3
        await watcher.close()

    run(scenario())


def test_submit_cli_prints_the_answer_as_json(stack: Stack) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_agent.cli",
            "submit",
            "What is 6 * 7?",
            "--broker",
            stack.broker.url,
            "--fabric",
            stack.connection.fabric,
            "--json",
            "--timeout",
            "20",
            "--task-id",
            "cli-1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=stack.fleet.env,
    )
    assert completed.returncode == 0, completed.stderr
    answer = TaskAnswer.model_validate_json(completed.stdout)
    assert (answer.task_id, answer.answer, answer.router_id) == ("cli-1", "42", "shared-router")
    assert len(answer.subtasks[0].ballots) >= 2


# --- failures --------------------------------------------------------------------------------------------


@pytest.fixture
def fleet(any_broker: RunningBroker, fabric: str, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(any_broker.url, fabric, tmp_path, child_env(tmp_path))
    yield fleet
    fleet.stop()


def test_a_killed_agent_run_is_redispatched_and_the_task_answered(
    any_broker: RunningBroker, fabric: str, fleet: Fleet
) -> None:
    """Four one-agent nodes (echo, 3 s); the first agent dispatched is SIGKILLed: its Will fails the run."""
    for index in range(1, 5):
        fleet.node(f"n{index}", delay_s=3.0)
    fleet.router("r1")
    connection = connection_for(any_broker, fabric)

    async def scenario() -> None:
        watcher = await Watcher(connection).start()
        await watcher.wait_ready(4, {"r1"})
        async with FabricTaskClient(connection) as client:
            submitted = asyncio.ensure_future(
                client.submit("What is 6 * 7?", task_id="kill-1", cot_count=3, top_l=4, deadline_s=40, trace="full")
            )
            await watcher.wait_for("a dispatch", lambda: bool(watcher.events("kill-1", "dispatched")))
            victim = watcher.events("kill-1", "dispatched")[0].data["agent"]
            fleet.kill(victim.removesuffix("-math"))
            answer = await submitted
        (redispatched,) = watcher.events("kill-1", "redispatched")
        assert redispatched.data["failed_agent"] == victim
        assert redispatched.data["error"] == "backend_error"  # the offline Will, not a run timeout
        first_three = dispatched_agents(watcher, "kill-1")[0][:3]
        assert redispatched.data["next_agent"] not in (None, *first_three)
        assert answer.answer == "42"
        assert victim not in {ballot.agent_id for ballot in answer.subtasks[0].ballots}
        await watcher.close()

    try:
        run(scenario())
    except AssertionError:
        print(fleet.logs())
        raise


def test_two_routers_answer_each_task_exactly_once(amqtt_broker: RunningBroker, fabric: str, tmp_path: Path) -> None:
    fleet = Fleet(amqtt_broker.url, fabric, tmp_path, child_env(tmp_path))
    fleet.node("twin-node", agents=3)
    fleet.router("router-a")
    fleet.router("router-b")
    connection = connection_for(amqtt_broker, fabric)
    task_ids = [f"twin-{index:02d}" for index in range(20)]

    async def scenario() -> None:
        watcher = await Watcher(connection).start()
        await watcher.wait_ready(3, {"router-a", "router-b"})
        await asyncio.sleep(0.5)  # both routers hold the same roster once both presences went round
        async with FabricTaskClient(connection) as client:
            answers = await asyncio.gather(
                *(client.submit("What is 6 * 7?", task_id=t, cot_count=2, deadline_s=20) for t in task_ids)
            )
        await watcher.wait_for("every answered event", lambda: all(watcher.events(t, "answered") for t in task_ids))
        await asyncio.sleep(0.5)  # a second router answering too would have replied by now
        assert [answer.answer for answer in answers] == ["42"] * 20
        replies = Counter(m.task_id for _, m in watcher.seen if isinstance(m, TaskAnswer))
        assert replies == dict.fromkeys(task_ids, 1)
        owners = {t: {e.router_id for e in watcher.events(t)} for t in task_ids}
        assert all(len(routers) == 1 for routers in owners.values()), owners
        assert set().union(*owners.values()) == {"router-a", "router-b"}  # the work is split
        assert all({answer.router_id} == owners[answer.task_id] for answer in answers)
        await watcher.close()

    try:
        run(scenario())
    except AssertionError:
        print(fleet.logs())
        raise
    finally:
        fleet.stop()


def test_submit_without_a_router_exits_non_zero_with_a_clear_message(
    amqtt_broker: RunningBroker, fabric: str, subprocess_env: dict[str, str]
) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_agent.cli",
            "submit",
            "Anyone there?",
            "--broker",
            amqtt_broker.url,
            "--fabric",
            fabric,
            "--timeout",
            "1",
            "--no-trace",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env,
    )
    assert completed.returncode == 1
    assert "Error: no answer to task" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert completed.stdout == ""


def test_task_request_helpers_round_trip() -> None:
    """The raw payloads the tests publish are what a client would send."""
    request = TaskRequest(task_id="x", query="q", reply_topic="symphony/f/reply/c", options=TaskOptions())
    assert decode(encode(request)) == request
