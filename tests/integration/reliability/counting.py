"""Counting for the exactly-once scenarios: continuous load from several clients, and what happened per task id.

- `continuous_load` runs several `FabricTaskClient`s, each submitting one task after another and resending every
  `resend_every_s` as the Python client does, until told to stop; it records every task's reply and latency.
- `agent_runs` reads the agents' logs (`edge-agent -v start` logs each run it really ran) and gives, per task id,
  the dispatch ids run and the routers they were run for: the ground truth for "run twice".
- `LedgerLog` records the routers' ledger entries (claims and answers), to tell which tasks a killed router
  was running when it died.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from integration.reliability.fleet import Fleet, report_line

from shared.client import FabricTaskClient, TaskTimeout
from shared.config import ConnectionSettings
from shared.errors import MessageError
from shared.messages import ErrorReply, LedgerEntry, TaskAnswer, TaskOptions, TaskRequest, decode
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

_RUN_LINE = re.compile(r"agent (\S+) ran (\S+) of task (\S+) for \S+/router/([^/\s]+)/inbox")


@dataclass
class TaskRecord:
    task_id: str
    started: float
    finished: float | None = None
    request: TaskRequest | None = None
    reply: TaskAnswer | ErrorReply | None = None

    @property
    def latency_s(self) -> float | None:
        return None if self.finished is None else self.finished - self.started


@dataclass
class LoadLog:
    tasks: dict[str, TaskRecord] = field(default_factory=dict)

    def answered(self) -> list[str]:
        return [t for t, r in self.tasks.items() if isinstance(r.reply, TaskAnswer)]

    def lost(self) -> list[str]:
        return [t for t, r in self.tasks.items() if not isinstance(r.reply, TaskAnswer)]

    def answered_by(self, router_id: str, since: float = 0.0) -> list[TaskRecord]:
        """Tasks `router_id` answered at or after `since` (monotonic), in the order they were submitted."""
        return [
            r
            for r in self.tasks.values()
            if isinstance(r.reply, TaskAnswer) and r.reply.router_id == router_id and (r.finished or 0.0) >= since
        ]

    def answered_since(self, since: float) -> list[str]:
        """Tasks submitted at or after `since` (monotonic) that got a TaskAnswer."""
        return [t for t, r in self.tasks.items() if r.started >= since and isinstance(r.reply, TaskAnswer)]

    def open_before(self, at: float) -> list[str]:
        """Tasks submitted before `at` (monotonic) that have no reply yet."""
        return [t for t, r in self.tasks.items() if r.started < at and r.finished is None]

    def in_flight_between(self, start: float, end: float) -> list[TaskRecord]:
        """Tasks in flight at any moment from `start` to `end` (monotonic)."""
        return [r for r in self.tasks.values() if r.started <= end and (r.finished is None or r.finished >= start)]

    def caught_in(self, faults: list[float]) -> list[TaskRecord]:
        """Tasks in flight at any of the fault moments (monotonic)."""
        return [
            r
            for r in self.tasks.values()
            if any(r.started <= at and (r.finished is None or r.finished >= at) for at in faults)
        ]


def p95(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


async def continuous_load(
    settings: ConnectionSettings,
    clients: int,
    stop: asyncio.Event,
    log: LoadLog,
    *,
    resend_every_s: float = 2.0,
    give_up_s: float = 30.0,
) -> None:
    """`clients` clients, each with two tasks open at a time, submitting until `stop` is set.

    Tasks keep the default deadline and run timeout, as the README's client sends them; a client gives up on a
    task (lost) after `give_up_s`.
    """

    async def one_client(number: int) -> None:
        async with FabricTaskClient(settings, client_id=f"load-{number}-{uuid.uuid4().hex[:6]}") as client:
            await asyncio.gather(*(one_stream(client, number, stream) for stream in range(2)))

    async def one_stream(client: FabricTaskClient, number: int, stream: int) -> None:
        index = 0
        while not stop.is_set():
            index += 1
            task_id = f"c{number}s{stream}-{index}-{uuid.uuid4().hex[:6]}"
            request = TaskRequest(
                task_id=task_id,
                query=f"What is {number} + {stream} + {index}?",
                reply_topic=client.reply_topic,
                client_id=client.client_id,
                options=TaskOptions(cot_count=2),  # the default deadline (60 s) and run timeout (30 s)
                sent_at=time.time(),
            )
            record = log.tasks[task_id] = TaskRecord(task_id, time.monotonic(), request=request)
            with contextlib.suppress(TaskTimeout):
                record.reply = await client.submit_request(request, give_up_s, resend_every_s)
                record.finished = time.monotonic()

    await asyncio.gather(*(one_client(number) for number in range(clients)))


async def resubmit(settings: ConnectionSettings, request: TaskRequest, attempts: int = 10) -> TaskAnswer | ErrorReply:
    """Send `request` again as its client would (same task id, same reply topic), resending every 2 s."""
    topics = Topics(settings.fabric)
    reply: asyncio.Future[TaskAnswer | ErrorReply] = asyncio.get_running_loop().create_future()

    def on_reply(topic: str, payload: bytes) -> None:
        with contextlib.suppress(MessageError):
            message = decode(payload)
            ours = isinstance(message, (TaskAnswer, ErrorReply)) and message.task_id == request.task_id
            if ours and not reply.done():
                reply.set_result(message)

    client = FabricClient(settings, unique_client_id("resubmit"))
    await client.subscribe(topics.reply(request.client_id), on_reply)
    await client.connect()
    try:
        for _ in range(attempts):
            await client.publish_confirmed(topics.client_task_submit(request.client_id), request)
            with contextlib.suppress(asyncio.TimeoutError):
                return await asyncio.wait_for(asyncio.shield(reply), 2.0)
        raise TaskTimeout(f"no reply to the resubmitted task {request.task_id}")
    finally:
        await client.close()


async def replay_answered(
    settings: ConnectionSettings,
    load: LoadLog,
    router_id: str,
    count: int,
    logs: Callable[[], list[Path]],
    since: float = 0.0,
) -> tuple[list[TaskAnswer | object], int]:
    """Resubmit up to `count` tasks that `router_id` answered (at or after `since`, monotonic), as their clients would.

    Returns the replies (the TaskAnswer when replayed with the same answer, else `("not replayed", reply)`) and
    the agent runs of those tasks made meanwhile (read from `logs()`; 0 when nothing ran again).
    """
    chosen = load.answered_by(router_id, since)[:count]
    task_ids = {record.task_id for record in chosen}
    before = agent_runs(logs()).total(task_ids)
    replies: list[TaskAnswer | object] = []
    for record in chosen:
        assert record.request is not None and isinstance(record.reply, TaskAnswer)
        reply = await resubmit(settings, record.request)
        same = isinstance(reply, TaskAnswer) and reply.replayed and reply.answer == record.reply.answer
        replies.append(reply if same else ("not replayed", reply))
    await asyncio.sleep(0.5)
    return replies, agent_runs(logs()).total(task_ids) - before


@dataclass
class AgentRuns:
    """Per task id: the dispatch ids the agents ran (with repeats) and the routers they ran them for."""

    dispatches: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    routers: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def dispatch_run_twice(self) -> list[str]:
        return [t for t, counts in self.dispatches.items() if any(n > 1 for n in counts.values())]

    def by_two_routers(self) -> list[str]:
        return [t for t, routers in self.routers.items() if len(routers) > 1]

    def total(self, task_ids: set[str]) -> int:
        return sum(sum(self.dispatches[task_id].values()) for task_id in task_ids if task_id in self.dispatches)


def agent_runs(log_files: list[Path]) -> AgentRuns:
    runs = AgentRuns()
    for path in log_files:
        for match in _RUN_LINE.finditer(path.read_text(errors="replace")):
            _, dispatch_id, task_id, router_id = match.groups()
            runs.dispatches[task_id][dispatch_id] += 1
            runs.routers[task_id].add(router_id)
    return runs


class LedgerLog:
    """Every ledger entry the routers publish, and every reply on the fabric (a passive MQTT client)."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.topics = Topics(settings.fabric)
        self.client = FabricClient(settings, unique_client_id("ledger-log"))
        self.entries: list[LedgerEntry] = []
        self.answers: dict[str, set[str]] = defaultdict(set)  # task id -> the distinct answers seen

    async def start(self) -> None:
        await self.client.subscribe(self.topics.ledgers(), self._on_entry)
        await self.client.subscribe(f"{self.topics.prefix}/reply/+", self._on_reply)
        await self.client.connect()

    async def close(self) -> None:
        await self.client.close()

    def _on_entry(self, topic: str, payload: bytes) -> None:
        with contextlib.suppress(MessageError):
            entry = decode(payload, LedgerEntry)
            self.entries.append(entry)
            if entry.answer is not None:
                self.answers[entry.task_id].add(entry.answer.answer)

    def _on_reply(self, topic: str, payload: bytes) -> None:
        with contextlib.suppress(MessageError):
            reply = decode(payload)
            if isinstance(reply, TaskAnswer):
                self.answers[reply.task_id].add(reply.answer)

    def unfinished_claims(self, router_id: str, instance_id: str) -> set[str]:
        """Tasks a router instance claimed and never answered (it died running them)."""
        mine = [e for e in self.entries if e.router_id == router_id and e.instance_id == instance_id]
        return {e.task_id for e in mine if e.status == "running"} - {e.task_id for e in mine if e.status == "answered"}

    def instances(self, router_id: str) -> list[str]:
        seen: list[str] = []
        for entry in self.entries:
            if entry.router_id == router_id and entry.instance_id not in seen:
                seen.append(entry.instance_id)
        return seen


def scenario_report(name: str, load: LoadLog, faults: list[float], runs_twice: int, extra: str = "") -> None:
    """The figures of one scenario: tasks submitted, answered, lost, run twice, p95 latency of those in a fault."""
    caught = load.caught_in(faults)
    latencies = [r.latency_s for r in caught if r.latency_s is not None]
    report_line(
        name,
        f"submitted={len(load.tasks)} answered={len(load.answered())} lost={len(load.lost())} "
        f"run twice={runs_twice} caught in the fault={len(caught)} p95 latency of those={p95(latencies):.2f} s"
        + (f"; {extra}" if extra else ""),
    )


def agent_logs(fleets: list[Fleet], agents: tuple[str, ...]) -> list[Path]:
    """The logs of every process of `agents` in `fleets` (restarts included)."""
    return sorted(path for fleet in fleets for agent in agents for path in fleet.directory.glob(f"{agent}.*.log"))
