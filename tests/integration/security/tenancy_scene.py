"""A provisioned fleet for the tenancy tests: its broker on the rendered passwords and ACL (amqtt or mosquitto),
the hub's router in this process, and node-a's agent played by the test over node-a's own account.

The tests act as the accounts do: `alice` is the victim, `bob` the second account that attacks her tasks, each
logged in with its rendered password; they send what a raw MQTT client can send, on every topic they may try.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from secured import Fleet, broker_command, render_fleet, start_broker

from router.service import RouterConfig, RouterService
from shared.config import ConnectionSettings
from shared.errors import MessageError
from shared.messages import AgentInfo, NodeBeacon, RunRequest, RunResult, decode, encode
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

WAIT_S = 20.0
AGENT = "node-a-writer"  # the rendered ACL lets node-a read only this agent's run topic


BROKERS = ["amqtt", "mosquitto"]


def secured_fleet(kind: str, tmp_path: Path, fabric: str) -> Iterator[Fleet]:
    """A rendered fleet (clients alice and bob, router hub, nodes node-a and node-b) on its broker (for a fixture
    of each test module, parametrised over `BROKERS`)."""
    fleet = render_fleet(tmp_path, fabric)
    broker = start_broker(broker_command(kind, fleet, "127.0.0.1"), "127.0.0.1", fleet.port)
    yield fleet
    broker.stop()


def run(coroutine: Any, timeout: float = 120.0) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


async def eventually(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Wait (bounded) until `condition()` holds; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def submit_topics(topics: Topics, account: str) -> list[str]:
    """Every topic an account might submit on: the legacy one and its own (built by hand: an attacker's view)."""
    return [f"{topics.prefix}/task/submit", f"{topics.prefix}/task/submit/{account}"]


def task_payload(task_id: str, reply_to: str, topics: Topics, **options: Any) -> bytes:
    """A raw TaskRequest naming `reply_to`'s reply topic and client id (what a hostile client may write)."""
    request = {
        "kind": "task_request",
        "v": 1,
        "task_id": task_id,
        "query": "What is 6 * 7?",
        "reply_topic": topics.reply(reply_to),
        "client_id": reply_to,
        "options": {"trace": "full", **options},  # every event a task can send: what an attacker would ask for
    }
    return json.dumps(request).encode()


async def attempt(connection: ConnectionSettings, topic: str, payload: bytes) -> None:
    """Publish as a raw client of `connection`'s account would, on its own connection, and return once the broker
    handled it (QoS 1: acknowledged, or refused: mosquitto answers a denied publish by dropping the publisher)."""
    client = FabricClient(connection, unique_client_id(f"{connection.username}-raw"))
    await client.connect()
    try:
        with contextlib.suppress(Exception):  # a refused publish: the broker's answer is what is tested
            await client.publish_confirmed(topic, payload, timeout=3.0)
    finally:
        await client.close()


@dataclass
class Inbox:
    """What one account receives on its reply topic and its tasks' events topics."""

    client: FabricClient
    messages: list[tuple[str, Any]] = field(default_factory=list)

    def of(self, task_id: str) -> list[Any]:
        return [message for _, message in self.messages if getattr(message, "task_id", None) == task_id]

    def kinds(self, task_id: str) -> list[str]:
        return [getattr(message, "event", None) or message.kind for message in self.of(task_id)]


async def inbox(fleet: Fleet, account: str) -> Inbox:
    topics = Topics(fleet.connection(account).fabric)
    box = Inbox(FabricClient(fleet.connection(account), unique_client_id(f"{account}-inbox")))

    def keep(topic: str, payload: bytes) -> None:
        with contextlib.suppress(MessageError):
            box.messages.append((topic, decode(payload)))

    await box.client.subscribe(topics.reply(account), keep)
    await box.client.subscribe(topics.client_task_events(account), keep)
    await box.client.connect()
    return box


@dataclass
class FakeAgent:
    """node-a's agent, played over node-a's account: it records every RunRequest, and answers `answer` (None:
    it holds every run, so a task stays in flight)."""

    connection: ConnectionSettings
    answer: str | None = None
    runs: list[RunRequest] = field(default_factory=list)
    client: FabricClient | None = None

    async def start(self) -> None:
        topics = Topics(self.connection.fabric)
        self.client = FabricClient(self.connection, unique_client_id("node-a"))
        await self.client.subscribe(topics.agent_run(AGENT), self._on_run)
        await self.client.connect()
        info = AgentInfo(agent_id=AGENT, backend="echo", model="echo", max_in_flight=64, capabilities=("writing",))
        beacon = NodeBeacon(
            node_id="node-a", epoch=int(time.time() * 1000), instance_id="fake", status="online", agents=(info,)
        )
        await self.client.publish_confirmed(topics.beacon("node-a"), beacon, retain=True)

    def _on_run(self, topic: str, payload: bytes) -> None:
        with contextlib.suppress(MessageError):
            message = decode(payload)
            if not isinstance(message, RunRequest):
                return
            self.runs.append(message)
            if self.answer is not None and self.client is not None:
                result = RunResult(
                    dispatch_id=message.dispatch_id,
                    task_id=message.task_id,
                    agent_id=AGENT,
                    node_id="node-a",
                    text=f"Final answer: {self.answer}",
                    completion_tokens=3,
                )
                self.client.publish(message.reply_topic, encode(result))

    def runs_of(self, task_id: str) -> list[RunRequest]:
        return [run for run in self.runs if run.task_id == task_id]


@contextlib.asynccontextmanager
async def scene(
    fleet: Fleet | None, answer: str | None = None, anonymous: ConnectionSettings | None = None, **config: Any
) -> AsyncIterator[tuple[RouterService, FakeAgent]]:
    """The hub's router (RouterConfig extras in `config`) and node-a's fake agent, the router seeing the agent
    (on the fleet's accounts, or on an `anonymous` loopback fabric)."""
    agent = FakeAgent(fleet.connection("node-a") if fleet else anonymous, answer)  # type: ignore[arg-type]
    await agent.start()
    hub = fleet.connection("hub") if fleet else anonymous
    router = RouterService(RouterConfig(router_id="hub", connection=hub, **config))  # type: ignore[arg-type]
    await router.start()
    try:
        await eventually(lambda: any(view.agent_id == AGENT for view in router.live_agents()), "the router's agent")
        yield router, agent
    finally:
        await router.stop()
        assert agent.client is not None
        await agent.client.close()
