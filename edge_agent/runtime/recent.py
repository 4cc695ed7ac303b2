"""The runs an agent node saw lately, by dispatch id, so a re-asked run is never run twice.

A router re-asks its outstanding runs (same dispatch id) after a reconnect, when a node re-announces itself, and
when a client resends the task. The node then runs a request only if it never saw its dispatch id; while the run
is going it ignores the request (the result will come); once done it sends the kept result again. The last
`capacity` dispatch ids are kept (default 1024: minutes of work for a board), the oldest go first.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

from shared.messages import RunResult

DEFAULT_CAPACITY = 1024
Seen = Literal["new", "running"] | RunResult


class RecentRuns:
    """Dispatch id -> running, or the result it produced."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._runs: OrderedDict[str, RunResult | None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._runs)

    def seen(self, dispatch_id: str) -> Seen:
        """`new` (never seen: run it), `running`, or the result to send again."""
        if dispatch_id not in self._runs:
            return "new"
        result = self._runs[dispatch_id]
        return "running" if result is None else result

    def started(self, dispatch_id: str) -> None:
        self._runs[dispatch_id] = None
        self._runs.move_to_end(dispatch_id)
        while len(self._runs) > self.capacity:
            self._runs.popitem(last=False)

    def finished(self, result: RunResult) -> None:
        if result.dispatch_id in self._runs:
            self._runs[result.dispatch_id] = result
