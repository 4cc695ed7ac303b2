"""What a task's trace events say about routing: candidates with their UCB, the agents run, the rewards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.messages import TaskAnswer, TaskEvent


@dataclass
class TraceCollector:
    """Collects one task's events (the client's `on_event` callback) into a LinUCB trace record."""

    events: list[TaskEvent] = field(default_factory=list)

    def add(self, event: TaskEvent) -> None:
        self.events.append(event)

    def record(self, answer: TaskAnswer | None) -> dict[str, Any]:
        """Per task: the last subtask's screened candidates, the agents dispatched, the rewards and ballots."""
        candidates: list[dict[str, Any]] = []
        dispatched: list[str] = []
        rewards: dict[str, float] = {}
        for event in self.events:
            if event.event == "screened" and "candidates" in event.data:
                candidates = list(event.data["candidates"])
            elif event.event == "dispatched" and event.data.get("subtask", 0) >= 0:
                dispatched.append(str(event.data.get("agent", "")))
            elif event.event == "rewarded":
                rewards = {str(agent): float(value) for agent, value in event.data.get("rewards", {}).items()}
        ballots = [ballot.model_dump() for ballot in answer.subtasks[-1].ballots] if answer and answer.subtasks else []
        return {
            "candidates": candidates,
            "chosen": [ballot["agent_id"] for ballot in ballots],
            "dispatched": dispatched,
            "rewards": rewards,
            "ballots": ballots,
        }
