"""Helpers of the reliability suite: a fleet of agent and router processes, a watcher, and a load driver.

Everything runs on loopback. Agents use the echo backend (0.2 s per run) so failures come from the fabric,
not from a model. Every wait is bounded; the tests assert outcomes (nothing lost), never timings, except
for loose bounds that are reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from support import stop_processes

from shared.client import FabricTaskClient, TaskTimeout
from shared.config import ConnectionSettings
from shared.errors import MessageError
from shared.messages import ErrorReply, NodeBeacon, RouterPresence, TaskAnswer, TaskEvent, decode
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

KEEPALIVE_S = 2
ECHO_DELAY_S = 0.2


@dataclass
class Fleet:
    """Agent and router processes of one fabric, started with the CLI as an operator would."""

    directory: Path
    env: dict[str, str]
    fabric: str
    brokers: list[str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started: Counter[str] = field(default_factory=Counter)
    cli_options: tuple[str, ...] = ()  # before the subcommand, e.g. ("-v",) to log every run an agent makes

    def config_file(self) -> Path:
        path = self.directory / "node.yaml"
        if not path.exists():
            config = {
                "agents": [
                    {
                        "preset": "math",
                        "backend": "echo",
                        "max_in_flight": 4,
                        "backend_settings": {"delay_s": ECHO_DELAY_S},
                    }
                ],
                "connection": {"keepalive_s": KEEPALIVE_S},
                "state_interval_s": 1,
            }
            path.write_text(yaml.safe_dump(config))
        return path

    def _broker_args(self) -> list[str]:
        return [argument for url in self.brokers for argument in ("--broker", url)]

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        self.started[name] += 1
        log = open(self.directory / f"{name}.{self.started[name]}.log", "wb")  # noqa: SIM115 - owned by the child
        process = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.cli", *self.cli_options, *command],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.processes[name] = process
        return process

    def start_agent(self, node_id: str) -> subprocess.Popen[bytes]:
        command = ["start", *self._broker_args(), "--fabric", self.fabric, "--node-id", node_id]
        return self._spawn(node_id, [*command, "--backend", "echo", "-c", str(self.config_file())])

    def start_router(self, router_id: str) -> subprocess.Popen[bytes]:
        command = ["router", *self._broker_args(), "--fabric", self.fabric, "--router-id", router_id]
        return self._spawn(router_id, [*command, "-c", str(self.config_file())])

    def start_node(self, name: str, config_file: Path, *extra: str) -> subprocess.Popen[bytes]:
        """`edge-agent start -c CONFIG` on a provisioned node.yaml (brokers and credentials come from it)."""
        return self._spawn(name, ["start", "-c", str(config_file), *extra])

    def start_router_node(self, name: str, config_file: Path) -> subprocess.Popen[bytes]:
        """`edge-agent router -c CONFIG` on a provisioned node.yaml of a node that hosts a router only."""
        return self._spawn(name, ["router", "-c", str(config_file)])

    def kill(self, name: str) -> None:
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)

    def alive(self, name: str) -> bool:
        return self.processes[name].poll() is None

    def log_text(self, name: str) -> str:
        path = self.directory / f"{name}.{self.started[name]}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        stop_processes(self.processes.values())


class Watcher:
    """Watches beacons, router presence, trace events and replies of one fabric (a passive MQTT client)."""

    def __init__(self, connection: ConnectionSettings) -> None:
        self.topics = Topics(connection.fabric)
        self.client = FabricClient(connection, unique_client_id("watcher"))
        self.beacons: dict[str, NodeBeacon] = {}
        self.beacon_log: list[tuple[float, NodeBeacon]] = []
        self.presences: dict[str, RouterPresence] = {}
        self.presence_log: list[tuple[float, RouterPresence]] = []
        self.events: dict[str, list[TaskEvent]] = defaultdict(list)
        self.replies: dict[str, list[TaskAnswer | ErrorReply]] = defaultdict(list)
        self.changed = asyncio.Event()

    async def start(self) -> None:
        await self.client.subscribe(self.topics.beacons(), self._on_beacon)
        await self.client.subscribe(self.topics.router_presences(), self._on_presence)
        await self.client.subscribe(self.topics.all_task_events(), self._on_event)
        await self.client.subscribe(f"{self.topics.prefix}/reply/+", self._on_reply)
        await self.client.connect()

    async def close(self) -> None:
        await self.client.close()

    def _on_beacon(self, topic: str, payload: bytes) -> None:
        with contextlib.suppress(MessageError):
            beacon = decode(payload, NodeBeacon)
            self.beacons[beacon.node_id] = beacon
            self.beacon_log.append((time.monotonic(), beacon))
            self.changed.set()

    def _on_presence(self, topic: str, payload: bytes) -> None:
        with contextlib.suppress(MessageError):
            presence = decode(payload, RouterPresence)
            self.presences[presence.router_id] = presence
            self.presence_log.append((time.monotonic(), presence))
            self.changed.set()

    def _on_event(self, topic: str, payload: bytes) -> None:
        with contextlib.suppress(MessageError):
            event = decode(payload, TaskEvent)
            self.events[event.task_id].append(event)
            self.changed.set()

    def _on_reply(self, topic: str, payload: bytes) -> None:
        with contextlib.suppress(MessageError):
            reply = decode(payload)
            # QoS 1 is at least once: a reply whose PUBLISH was resent after a reconnect (a NATS server closes a
            # client whose publish timed out) arrives twice, the same bytes; a second pipeline run would differ.
            if (
                isinstance(reply, (TaskAnswer, ErrorReply))
                and reply.task_id
                and reply not in self.replies[reply.task_id]
            ):
                self.replies[reply.task_id].append(reply)

    def explain(self, task_ids: list[str]) -> str:
        """What the fabric showed of `task_ids` (their events) and of the nodes (beacons): a failure's story."""
        lines = [f"{e.task_id} {e.event} {e.data}" for t in task_ids for e in self.events.get(t, [])]
        lines += [f"{at:.2f} beacon {b.node_id} {b.status} epoch {b.epoch}" for at, b in self.beacon_log]
        return "\n".join(lines)

    def online(self, node_id: str, newer_than: int = -1) -> bool:
        beacon = self.beacons.get(node_id)
        return beacon is not None and beacon.status == "online" and beacon.epoch > newer_than

    async def wait_until(self, condition: Any, timeout: float) -> bool:
        """Wait (bounded) until `condition()` holds; re-checked on every change and every 0.1 s."""
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(0.1, remaining))
        return True

    def busy_nodes(self) -> set[str]:
        """Nodes with a run dispatched to them and no result yet, in tasks not yet answered."""
        agent_to_node = {agent.agent_id: b.node_id for b in self.beacons.values() for agent in b.agents}
        open_runs: dict[str, str] = {}
        for events in self.events.values():
            if any(event.event in ("answered", "failed") for event in events):
                continue
            for event in events:
                if event.event == "dispatched":
                    open_runs[event.data["dispatch_id"]] = event.data["agent"]
                elif event.event == "result":
                    open_runs.pop(event.data.get("dispatch_id", ""), None)
        return {agent_to_node[agent] for agent in open_runs.values() if agent in agent_to_node}

    def announced_since(self, since: float) -> set[str]:
        """Node and router ids that published an online beacon or presence after `since` (monotonic)."""
        nodes = {b.node_id for t, b in self.beacon_log if t >= since and b.status == "online"}
        return nodes | {p.router_id for t, p in self.presence_log if t >= since and p.status == "online"}

    def duplicate_answers(self) -> dict[str, int]:
        """Task ids answered by more than one pipeline run (replays of a cached answer do not count)."""
        runs = {
            task_id: sum(isinstance(r, TaskAnswer) and not r.replayed for r in replies)
            for task_id, replies in self.replies.items()
        }
        return {task_id: count for task_id, count in runs.items() if count > 1}

    def event_names(self) -> Counter[str]:
        return Counter(event.event for events in self.events.values() for event in events)


@dataclass
class LoadReport:
    """What the clients saw: per task id, the reply (or None when the client gave up: a lost task)."""

    outcomes: dict[str, TaskAnswer | ErrorReply | None] = field(default_factory=dict)

    @property
    def answered(self) -> int:
        return sum(isinstance(reply, TaskAnswer) for reply in self.outcomes.values())

    @property
    def failed(self) -> list[ErrorReply]:
        return [reply for reply in self.outcomes.values() if isinstance(reply, ErrorReply)]

    @property
    def lost(self) -> list[str]:
        return [task_id for task_id, reply in self.outcomes.items() if reply is None]

    def summary(self) -> str:
        codes = Counter(reply.code for reply in self.failed)
        return (
            f"sent={len(self.outcomes)} answered={self.answered} failed={len(self.failed)} {dict(codes)} "
            f"lost={len(self.lost)}"
        )


async def drive_load(
    client: FabricTaskClient,
    count: int,
    concurrency: int,
    *,
    deadline_s: float = 8.0,
    resend_every_s: float = 1.0,
    cot_count: int = 2,
    prefix: str = "task",
) -> LoadReport:
    """Submit `count` tasks, `concurrency` at a time; each either gets a reply or is counted lost."""
    report = LoadReport()
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        task_id = f"{prefix}-{index}-{uuid.uuid4().hex[:6]}"
        async with gate:
            request = _request(client, task_id, f"What is {index} + {index}?", deadline_s, cot_count)
            try:
                # A resent task gets a fresh deadline at a new owner, so the client waits for two deadlines.
                report.outcomes[task_id] = await client.submit_request(request, 2 * deadline_s + 10, resend_every_s)
            except TaskTimeout:
                report.outcomes[task_id] = None

    await asyncio.gather(*(one(index) for index in range(count)))
    return report


@dataclass
class BrokerFault:
    """Load before, during and after a broker was killed, and whether (and when) the named components moved."""

    before: LoadReport
    during: LoadReport
    after: LoadReport
    moved: bool
    moved_s: float

    def summary(self, watcher: Watcher, moved_to: str) -> str:
        return (
            f"before: {self.before.summary()}; during: {self.during.summary()}; {moved_to} {self.moved_s:.2f} s "
            f"after the broker was killed; after: {self.after.summary()}; "
            f"answered twice={len(watcher.duplicate_answers())}"
        )


async def broker_killed_under_load(
    client: FabricTaskClient,
    watcher: Watcher,
    kill: Any,
    movers: set[str],
    *,
    tasks: int,
    concurrency: int,
    deadline_s: float,
    move_wait_s: float,
    probe_deadline_s: float = 10.0,
    after_deadline_s: float = 10.0,
) -> BrokerFault:
    """`concurrency` probe tasks, then `tasks` tasks during which `kill()` stops a broker; `concurrency` after.

    Waits (bounded by `move_wait_s`) until every one of `movers` (node and router ids) re-announced after the kill.
    """
    before = await drive_load(
        client, concurrency, concurrency=concurrency, deadline_s=probe_deadline_s, prefix="before"
    )
    load = asyncio.ensure_future(drive_load(client, tasks, concurrency=concurrency, deadline_s=deadline_s))
    await asyncio.sleep(1.0)
    kill()
    killed_at = time.monotonic()
    moved = await watcher.wait_until(lambda: watcher.announced_since(killed_at) >= movers, move_wait_s)
    moved_s = time.monotonic() - killed_at
    during = await load
    after = await drive_load(client, concurrency, concurrency=concurrency, deadline_s=after_deadline_s, prefix="after")
    return BrokerFault(before, during, after, moved, moved_s)


def _request(client: FabricTaskClient, task_id: str, query: str, deadline_s: float, cot_count: int) -> Any:
    from shared.messages import TaskOptions, TaskRequest

    return TaskRequest(
        task_id=task_id,
        query=query,
        reply_topic=client.reply_topic,
        client_id=client.client_id,
        # trace full: the tests' watchers count every step's event (a task traces a summary by default)
        options=TaskOptions(
            cot_count=cot_count, deadline_s=deadline_s, run_timeout_s=min(3.0, deadline_s / 2), trace="full"
        ),
        sent_at=time.time(),
    )


async def start_fleet(fleet: Fleet, watcher: Watcher, routers: tuple[str, ...], agents: tuple[str, ...]) -> None:
    """Start routers and agents as processes and wait (bounded) until the watcher sees all of them live."""
    for router_id in routers:
        fleet.start_router(router_id)
    for node_id in agents:
        fleet.start_agent(node_id)

    def ready() -> bool:
        return all(watcher.online(n) for n in agents) and all(r in watcher.presences for r in routers)

    assert await watcher.wait_until(ready, 30), fleet.log_text(routers[0])


def slow_agents(fleet: Fleet, run_s: float, keepalive_s: int = KEEPALIVE_S, **connection_settings: Any) -> None:
    """Echo agents that take `run_s` per run, logging every run they make (`edge-agent -v`)."""
    fleet.cli_options = ("-v",)
    agent = {"preset": "math", "backend": "echo", "max_in_flight": 4, "backend_settings": {"delay_s": run_s}}
    settings = {"keepalive_s": keepalive_s, **connection_settings}
    config = {"agents": [agent], "connection": settings, "state_interval_s": 1}
    fleet.config_file().write_text(yaml.safe_dump(config))


def connection(urls: list[str], fabric: str) -> ConnectionSettings:
    return ConnectionSettings(fabric=fabric, brokers=tuple(urls), keepalive_s=KEEPALIVE_S, connect_timeout_s=15.0)


def bounded(coroutine: Any, timeout: float = 150.0) -> Any:
    """Run a scenario coroutine with an overall bound, so a hang fails instead of stalling the suite."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


def report_line(name: str, text: str) -> None:
    """Print a figure for the final report (shown with -s, and in the terminal summary on failure)."""
    print(f"\n[reliability] {name}: {text}", file=sys.stderr, flush=True)
    with contextlib.suppress(OSError), open(os.environ.get("RELIABILITY_REPORT", "/dev/null"), "a") as stream:
        stream.write(f"{name}: {text}\n")
