"""One routed task as one record: what the router keeps while it runs a task, created and dropped in one place.

    RoutedTask
      ├─ request          the TaskRequest (its options: trace level, stream, cot_count; its reply topic)
      ├─ client           the reply topic's owner, in whose namespace the events go (events_topic)
      ├─ runner           the asyncio task driving the pipeline (cancelled by a TaskCancel or stop)
      ├─ runs             the runs dispatched and not yet finished, by dispatch id (request + result future)
      └─ stream_seq       the next TaskChunk's sequence number

`router.tasks.TaskHandlers` creates a RoutedTask when it claims a task and drops it when the task's reply is sent;
nothing else about a task in flight is kept anywhere else. The rules of what a task's client sees (which trace
events, what a streamed chunk carries) are here too, as small pure functions, so the pipeline and the handlers
ask the same question and get the same answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from shared.messages import ChunkPhase, RunRequest, RunResult, TaskChunk, TaskEventName, TaskOptions, TaskRequest

SUMMARY_EVENTS: frozenset[TaskEventName] = frozenset({"answered", "failed"})
"""The trace of a task that asked for a summary (the default): its last event alone."""


def traced(options: TaskOptions, event: TaskEventName) -> bool:
    """Whether a trace event of a task with these options is published (a full trace, or a summary's event)."""
    return options.trace == "full" or event in SUMMARY_EVENTS


@dataclass(eq=False)
class PendingRun:
    """A run sent to an agent whose result the pipeline awaits (resolved by the inbox, a death, or a timeout)."""

    request: RunRequest
    result: asyncio.Future[RunResult]


@dataclass(eq=False)
class RoutedTask:
    """A task this router runs, from its claim to its reply (see the module docstring)."""

    request: TaskRequest
    client: str
    events_topic: str
    runner: asyncio.Task[None] | None = None
    runs: dict[str, PendingRun] = field(default_factory=dict)
    stream_seq: int = 0

    @property
    def task_id(self) -> str:
        return self.request.task_id

    @property
    def reply_topic(self) -> str:
        assert self.request.reply_topic is not None, "a routed task's request is bound to its account (router.tenancy)"
        return self.request.reply_topic

    def traces(self, event: TaskEventName) -> bool:
        return traced(self.request.options, event)

    def chunk(self, phase: ChunkPhase, text: str, dispatch_id: str = "") -> TaskChunk | None:
        """The next TaskChunk of the client's stream (None: the task asked for no stream, or nothing to say)."""
        if not self.request.options.stream or not text:
            return None
        chunk = TaskChunk(task_id=self.task_id, seq=self.stream_seq, phase=phase, text=text, dispatch_id=dispatch_id)
        self.stream_seq += 1
        return chunk

    def outstanding(self) -> Iterator[PendingRun]:
        """The runs still awaited (their result not in yet)."""
        return (run for run in self.runs.values() if not run.result.done())


def without_gold(data: dict[str, Any]) -> dict[str, Any]:
    """Event data with every `gold_answer` removed (at any depth): events never carry the expected answer."""
    return {key: _strip(value) for key, value in data.items() if key != "gold_answer"}


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return without_gold(value)
    if isinstance(value, (list, tuple)):
        return [_strip(item) for item in value]
    return value
