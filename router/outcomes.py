"""What one task's runs come to, as voting and learning see them (pure data).

RunRecord       one finished run: the agent chosen, its result and the answer read from it
SubtaskOutcome  one voted step: its runs and the answer that won
PlannerRun      one planner's run and the plan read from it (or why none was used)
ChainOutcome    one planner's chain, executed step by step (plan_mode "chains")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from router.answers import ExtractedAnswer
from router.brain import Choice
from router.voting import PlanCandidate
from shared.messages import RunResult


@dataclass
class RunRecord:
    """One finished run of a subtask, as voting and learning see it."""

    choice: Choice
    dispatch_id: str
    result: RunResult
    answer: ExtractedAnswer
    order: int


@dataclass
class SubtaskOutcome:
    index: int
    text: str
    winner: str
    winner_raw: str
    winner_text: str
    records: list[RunRecord] = field(default_factory=list)


def winning_record(outcome: SubtaskOutcome) -> RunRecord:
    """The run whose answer won a step's vote (the first one that gave it)."""
    return next(r for r in outcome.records if r.answer.canonical == outcome.winner)


@dataclass
class PlannerRun:
    """One planner's run and the plan parsed from it (None when it failed or held no step)."""

    record: RunRecord
    candidate: PlanCandidate | None
    constrained: bool = False  # decoded under the plan schema
    steps: tuple[str, ...] = ()  # the steps read from its reply, used or not
    rejected: str | None = None  # why its plan was not used (a failed run, nothing readable, off topic)

    def summary(self) -> dict[str, Any]:
        """The planner, the steps it wrote and why they were not used, for a trace that falls back."""
        return {"planner": self.record.choice.agent_id, "steps": list(self.steps), "why": self.rejected}


@dataclass
class ChainOutcome:
    """One planner's chain (numbered from 1), executed: its steps' outcomes (complete: every step answered)."""

    number: int
    planner: PlannerRun
    steps: tuple[str, ...]
    outcomes: list[SubtaskOutcome]
    complete: bool

    @property
    def weight(self) -> float:
        """The seed's chain weight: mean Top-L score of the agents whose answers the chain carried."""
        scores = [winning_record(o).choice.screening.score for o in self.outcomes]
        return sum(scores) / len(scores) if scores else 0.0

    @property
    def answer(self) -> str:
        return self.outcomes[-1].winner if self.complete else ""

    @property
    def name(self) -> str:
        return f"chain-{self.number}"
