"""`edge-agent start` as a user runs it: agent processes on a real broker, spoken to over the fabric only."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from support import REPO, RunningBroker, connection_for

from shared.config import ConnectionSettings
from shared.messages import ErrorReply, NodeBeacon, NodeState, RunRequest, RunResult, SamplingOptions, decode, encode
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

T = TypeVar("T")
START_S = 60.0  # loading a model on a busy 2-core machine
WAIT_S = 15.0


def run(coroutine: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


class Inbox:
    """A subscription handler that queues payloads for the test to await."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def __call__(self, topic: str, payload: bytes) -> None:
        self.queue.put_nowait(payload)

    async def next(self, timeout: float = WAIT_S) -> bytes:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def beacon(self, status: str, timeout: float = START_S) -> NodeBeacon:
        """The next beacon with `status` (earlier ones, e.g. a retained offline beacon, are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            payload = await self.next(max(0.01, deadline - time.monotonic()))
            if payload:
                beacon: NodeBeacon = decode(payload, NodeBeacon)
                if beacon.status == status:
                    return beacon


class Agent:
    """One `python -m edge_agent.cli start ...` process; its output goes to a log file for diagnostics."""

    def __init__(self, arguments: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.stream = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.cli", *arguments],
            cwd=REPO,
            env=env,
            stdout=self.stream,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        self.stream.flush()
        return self.log.read_text()

    def signal(self, number: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(number)

    def wait(self, timeout: float = WAIT_S) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"agent did not exit within {timeout} s:\n{self.output()}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.stream.close()


@pytest.fixture
def agents(tmp_path: Path, subprocess_env: dict[str, str]) -> Iterator[Any]:
    """Start agent processes with `agents(broker, fabric, node_id, *extra)`; all are killed at teardown."""
    started: list[Agent] = []

    def start(broker: RunningBroker, fabric: str, node_id: str, *extra: str, backend: str = "echo") -> Agent:
        arguments = ["start", "--broker", broker.url, "--fabric", fabric, "--node-id", node_id]
        arguments += ["--backend", backend, "--preset", "math", *extra]
        agent = Agent(arguments, subprocess_env, tmp_path / f"agent-{node_id}-{len(started)}.log")
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


def node_config(tmp_path: Path, **settings: Any) -> str:
    path = tmp_path / f"node-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(settings))
    return str(path)


async def client_for(settings: ConnectionSettings, prefix: str = "test") -> FabricClient:
    client = FabricClient(settings, unique_client_id(prefix))
    await client.connect(timeout=WAIT_S)
    return client


async def watch_beacon(settings: ConnectionSettings, node_id: str) -> tuple[FabricClient, Inbox]:
    client = await client_for(settings, "beacons")
    inbox = Inbox()
    await client.subscribe(Topics(settings.fabric).beacon(node_id), inbox)
    return client, inbox


def run_request(agent_id: str, reply_topic: str, number: int = 0, **fields: Any) -> RunRequest:
    return RunRequest(
        dispatch_id=f"d-{number}",
        task_id="t-1",
        agent_id=agent_id,
        subtask=fields.pop("subtask", f"Say the number {number}."),
        reply_topic=reply_topic,
        **fields,
    )


# --- the real model ----------------------------------------------------------------------------------------


@pytest.mark.llamacpp
def test_a_llamacpp_agent_answers_a_run_request(
    amqtt_broker: RunningBroker, fabric: str, agents: Any, tmp_path: Path
) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    settings = connection_for(amqtt_broker, fabric)
    topics = Topics(fabric)
    agent = agents(amqtt_broker, fabric, "llama-node", backend="llamacpp")

    async def scenario() -> None:
        watcher, beacons = await watch_beacon(settings, "llama-node")
        online = await beacons.beacon("online")
        (info,) = online.agents
        assert (info.backend, info.persona) == ("llamacpp", "math")
        assert info.model.endswith(".gguf")

        client = await client_for(settings)
        replies = Inbox()
        reply_topic = topics.router_inbox(client.client_id)
        await client.subscribe(reply_topic, replies)
        request = run_request(
            info.agent_id,
            reply_topic,
            subtask="What is 2 + 3? Answer with one number.",
            sampling=SamplingOptions(max_tokens=24, temperature=0.0, seed=1),
        )
        assert await client.publish_confirmed(topics.agent_run(info.agent_id), request)
        result = decode(await replies.next(timeout=60), RunResult)
        assert result.error is None, result.error_message
        assert (result.dispatch_id, result.task_id, result.agent_id, result.node_id) == (
            "d-0",
            "t-1",
            info.agent_id,
            "llama-node",
        )
        assert result.text.strip()
        assert result.prompt_tokens > 0
        assert 0 < result.completion_tokens <= 24
        assert result.latency_ms > 0
        await client.close()
        await watcher.close()

    run(scenario())
    assert agent.process.poll() is None, agent.output()


@pytest.mark.llamacpp
def test_beacon_lifecycle_kill_restart_and_graceful_stop(
    amqtt_broker: RunningBroker, fabric: str, agents: Any, tmp_path: Path
) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    settings = connection_for(amqtt_broker, fabric)
    config = node_config(tmp_path, connection={"keepalive_s": 2}, state_interval_s=1)

    async def scenario() -> None:
        watcher, beacons = await watch_beacon(settings, "life")

        first = agents(amqtt_broker, fabric, "life", "-c", config, backend="llamacpp")
        born = await beacons.beacon("online")
        assert born.node_id == "life" and born.epoch > 0

        first.signal(signal.SIGKILL)
        died = await beacons.beacon("offline", timeout=3 * 2 + 5)  # within ~3x keepalive
        assert (died.epoch, died.instance_id) == (born.epoch, born.instance_id)
        late, late_beacons = await watch_beacon(settings, "life")  # the Will is retained
        assert decode(await late_beacons.next(), NodeBeacon) == died
        await late.close()

        second = agents(amqtt_broker, fabric, "life", "-c", config, backend="llamacpp")
        reborn = await beacons.beacon("online")
        assert reborn.epoch > born.epoch
        assert reborn.instance_id != born.instance_id

        second.signal(signal.SIGINT)
        stopped = await beacons.beacon("offline")
        assert (stopped.epoch, stopped.instance_id) == (reborn.epoch, reborn.instance_id)
        assert await asyncio.to_thread(second.wait) == 0, second.output()
        assert "stopping" in second.output()
        await watcher.close()

    run(scenario(), timeout=240)


def test_decommission_clears_the_retained_beacon(
    amqtt_broker: RunningBroker, fabric: str, agents: Any, subprocess_env: dict[str, str]
) -> None:
    settings = connection_for(amqtt_broker, fabric)

    async def scenario() -> None:
        watcher, beacons = await watch_beacon(settings, "retiree")
        agent = agents(amqtt_broker, fabric, "retiree")
        await beacons.beacon("online")
        agent.signal(signal.SIGINT)
        await beacons.beacon("offline")
        assert await asyncio.to_thread(agent.wait) == 0
        await watcher.close()

        late, late_beacons = await watch_beacon(settings, "retiree")
        assert decode(await late_beacons.next(), NodeBeacon).status == "offline"  # still retained
        await late.close()

        command = [sys.executable, "-m", "edge_agent.cli", "decommission", "--broker", amqtt_broker.url]
        command += ["--fabric", fabric, "--node-id", "retiree"]
        done = await asyncio.to_thread(
            subprocess.run, command, cwd=REPO, env=subprocess_env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "retiree" in done.stdout

        after, after_beacons = await watch_beacon(settings, "retiree")
        with pytest.raises(asyncio.TimeoutError):
            await after_beacons.next(timeout=1.5)  # nothing retained any more
        await after.close()

    run(scenario())


# --- the echo backend: the runtime's rules ------------------------------------------------------------------


def test_malformed_requests_get_bad_request_and_do_not_stop_the_agent(
    any_broker: RunningBroker, fabric: str, agents: Any
) -> None:
    settings = connection_for(any_broker, fabric)
    topics = Topics(fabric)
    agents(any_broker, fabric, "robust")

    async def scenario() -> None:
        watcher, beacons = await watch_beacon(settings, "robust")
        agent_id = (await beacons.beacon("online")).agents[0].agent_id
        run_topic = topics.agent_run(agent_id)
        client = await client_for(settings)
        replies = Inbox()
        reply_topic = topics.router_inbox(client.client_id)
        await client.subscribe(reply_topic, replies)

        good = json.loads(encode(run_request(agent_id, reply_topic)))
        malformed = [
            b'{"reply_topic": "%s", "task_id": "t-bad", "dispatch_id": "d-bad", "kind": "run_request", '
            % (reply_topic.encode()),  # truncated JSON that still names a reply topic
            json.dumps({**good, "dispatch_id": "d-types", "deadline_s": "soon", "context": 7}).encode(),
            json.dumps({**good, "dispatch_id": "d-kind", "kind": "bid"}).encode(),
            json.dumps({**good, "dispatch_id": "d-other", "agent_id": "someone-else"}).encode(),
        ]
        for payload in malformed:
            assert await client.publish_confirmed(run_topic, payload)
            error = decode(await replies.next(), ErrorReply)
            assert error.code == "bad_request", error
            assert error.task_id in ("t-bad", "t-1")
        assert await client.publish_confirmed(run_topic, b"\xff\xfe not even text")  # no reply topic: logged only
        assert await client.publish_confirmed(run_topic, encode(run_request(agent_id, reply_topic, 7)))
        reply = decode(await replies.next())
        assert isinstance(reply, RunResult), reply
        assert reply.dispatch_id == "d-7" and reply.ok
        await client.close()
        await watcher.close()

    run(scenario())


def test_max_in_flight_and_queue_size_are_respected(
    amqtt_broker: RunningBroker, fabric: str, agents: Any, tmp_path: Path
) -> None:
    settings = connection_for(amqtt_broker, fabric)
    topics = Topics(fabric)
    config = node_config(
        tmp_path,
        state_interval_s=0.2,
        agents=[{"max_in_flight": 2, "queue_size": 1, "backend_settings": {"delay_s": 1.0}}],
    )
    agents(amqtt_broker, fabric, "bounded", "-c", config)

    async def scenario() -> None:
        watcher, beacons = await watch_beacon(settings, "bounded")
        (info,) = (await beacons.beacon("online")).agents
        assert info.max_in_flight == 2
        states = Inbox()
        await watcher.subscribe(topics.state("bounded"), states)
        client = await client_for(settings)
        replies = Inbox()
        reply_topic = topics.router_inbox(client.client_id)
        await client.subscribe(reply_topic, replies)

        for number in range(5):
            client.publish(topics.agent_run(info.agent_id), run_request(info.agent_id, reply_topic, number))
        answers = [decode(await replies.next(timeout=30)) for _ in range(5)]
        results = [answer for answer in answers if isinstance(answer, RunResult)]
        refusals = [answer for answer in answers if isinstance(answer, ErrorReply)]
        assert len(results) == 3 and all(result.ok for result in results), answers
        assert len(refusals) == 2 and {refusal.code for refusal in refusals} == {"busy"}, answers
        assert {result.dispatch_id for result in results} | {refusal.dispatch_id for refusal in refusals} == {
            f"d-{number}" for number in range(5)
        }
        await client.close()

        in_flight = []
        while not states.queue.empty():
            state = decode(states.queue.get_nowait(), NodeState)
            in_flight += [agent.in_flight for agent in state.agents]
        assert in_flight, "no NodeState was published"
        assert max(in_flight) == 2  # both slots were used, and never more
        await watcher.close()

    run(scenario())


def test_a_duplicate_node_id_is_refused_while_the_first_is_live(
    amqtt_broker: RunningBroker, fabric: str, agents: Any, tmp_path: Path
) -> None:
    settings = connection_for(amqtt_broker, fabric)
    config = node_config(tmp_path, state_interval_s=1)
    first = agents(amqtt_broker, fabric, "twin", "-c", config)

    async def scenario() -> None:
        watcher, beacons = await watch_beacon(settings, "twin")
        born = await beacons.beacon("online")
        second = agents(amqtt_broker, fabric, "twin", "-c", config)
        code = await asyncio.to_thread(second.wait, 40)
        assert code != 0
        output = second.output()
        assert "twin" in output and "already live" in output, output
        assert born.instance_id in output
        assert "Traceback" not in output
        assert first.process.poll() is None, first.output()
        with pytest.raises(asyncio.TimeoutError):  # the first node's beacon was not disturbed
            await beacons.next(timeout=1.0)
        await watcher.close()

    run(scenario())
