"""The scripted fleet: distinct agents with known skill per benchmark and difficulty, price and latency."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.runner.prompts import REQUIREMENTS

Skill = dict[str, float | dict[str, float]]
DEGRADED_FACTOR = 0.3
"""A degraded agent (Exp2 with `shock="degrade"`) keeps 30 % of its skill."""


@dataclass(frozen=True)
class ScriptedProfile:
    """One scripted agent: its capability tags, its skill table, its price per 1k tokens and its speed."""

    agent_id: str
    capabilities: tuple[str, ...]
    skill: Skill
    cost_per_1k_tokens: float
    latency_ms: float = 40.0
    completion_tokens: int = 120
    extra: dict[str, Any] = field(default_factory=dict)

    def expected(self, benchmark: str, difficulty: str | None) -> float:
        """The configured chance of a right answer (as the scripted backend reads its table)."""
        entry = self.skill.get(benchmark, self.skill.get("*", 0.0))
        if isinstance(entry, float | int):
            return float(entry)
        return float(entry.get(difficulty or "medium", entry.get("*", 0.0)))


def _levels(easy: float, medium: float, hard: float) -> dict[str, float]:
    return {"easy": easy, "medium": medium, "hard": hard}


MATH, FACTS, ANALYSIS = (REQUIREMENTS[name][0] for name in ("gsm8k", "medqa", "bbh"))

DEFAULT_FLEET: tuple[ScriptedProfile, ...] = (
    ScriptedProfile("math-board", (MATH,), {"gsm8k": _levels(0.95, 0.85, 0.7), "*": 0.3}, 0.6, 40.0),
    ScriptedProfile("med-board", (FACTS,), {"medqa": _levels(0.9, 0.8, 0.65), "*": 0.3}, 0.6, 50.0),
    ScriptedProfile("logic-board", (ANALYSIS,), {"bbh": _levels(0.9, 0.8, 0.6), "*": 0.35}, 0.5, 45.0),
    ScriptedProfile("generalist", (MATH, FACTS, ANALYSIS), {"*": _levels(0.7, 0.55, 0.4)}, 0.15, 30.0),
)
"""Three specialists (each best at one benchmark, poor elsewhere) and a cheap generalist, mediocre everywhere."""


def expected_accuracy(profile: ScriptedProfile, items: Sequence[Any]) -> float:
    """The accuracy `profile` is configured to reach on `items` (the mean of its chance on each item)."""
    return sum(profile.expected(item.benchmark, item.difficulty) for item in items) / len(items) if items else 0.0


def best_by_skill(profiles: Sequence[ScriptedProfile], items: Sequence[Any]) -> str:
    """The agent whose configured skill gives the highest expected accuracy on `items` (ties: the first by name).

    The self-consistency baseline samples this agent: its configured skill is the truth its measured accuracy
    only estimates, and choosing it does not look at the answers of the items it is then scored on.
    """
    scores = {profile.agent_id: expected_accuracy(profile, items) for profile in profiles}
    return max(sorted(scores), key=lambda agent: scores[agent])


def node_config(
    profile: ScriptedProfile,
    seed: int,
    benchmarks: tuple[str, ...],
    cache_dir: Path | None,
    item_files: dict[str, str],
    keepalive_s: int,
    degrade_file: Path | None = None,
) -> dict[str, Any]:
    """The node YAML (as a dict) of one agent process running `profile`."""
    settings: dict[str, Any] = {
        "skill": profile.skill,
        "seed": seed,
        "benchmarks": list(benchmarks),
        "latency_ms": profile.latency_ms,
        "jitter": 0.2,
        "completion_tokens": profile.completion_tokens,
        "model": f"scripted-{profile.agent_id}",
        **profile.extra,
    }
    if degrade_file is not None:
        settings.update(degrade_file=str(degrade_file), degraded_factor=DEGRADED_FACTOR)
    if cache_dir is not None:
        settings["cache_dir"] = str(cache_dir)
    if item_files:
        settings["item_files"] = dict(item_files)
    return {
        "node_id": f"node-{profile.agent_id}",
        "connection": {"keepalive_s": keepalive_s},
        "state_interval_s": 1,
        "agents": [
            {
                "agent_id": profile.agent_id,
                "backend": "scripted",
                "capabilities": list(profile.capabilities),
                "max_in_flight": 4,
                "max_tokens": 256,
                "cost_per_1k_tokens": profile.cost_per_1k_tokens,
                "description": f"scripted agent {profile.agent_id} (known skill, for fleet benchmarks)",
                "backend_settings": settings,
            }
        ],
    }


def write_node_config(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
