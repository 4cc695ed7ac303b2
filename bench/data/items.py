"""The one record every loader returns: a benchmark item with its prompt material and gold answer."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

Benchmark = Literal["gsm8k", "humaneval", "medqa", "bbh", "amc"]
DifficultyBin = Literal["easy", "medium", "hard"]


@dataclass(frozen=True)
class BenchItem:
    """One benchmark question.

    `question` is the raw text the prompt builder formats; `gold` is what scoring compares against (for
    HumanEval, the test code lives in `extra["test"]` and `gold` only names the check). `extra` keeps the
    per-benchmark fields (options, entry point, BBH task, reference solution) that scoring and difficulty need.
    """

    item_id: str
    benchmark: Benchmark
    question: str
    gold: str
    extra: dict[str, Any] = field(default_factory=dict)
    difficulty_score: float | None = None
    difficulty: DifficultyBin | None = None

    def with_difficulty(self, score: float, label: DifficultyBin) -> BenchItem:
        return replace(self, difficulty_score=score, difficulty=label)
