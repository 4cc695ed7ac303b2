"""Prior success per agent and (benchmark, difficulty, capability), learned from outcomes; feeds Top-L screening.

An outcome is one finished run: correct or not when a gold answer is known, else whether it agreed with the
vote (a failed run is a miss). Estimates shrink towards the next coarser level, so a new key starts from
what is known about the agent in general:

    p(agent)                  = (s + m * 0.5)          / (n + m)     over all of the agent's outcomes
    p(agent, b)               = (s + m * p(agent))     / (n + m)     over its outcomes on benchmark b
    p(agent, b, d)            = (s + m * p(agent, b))  / (n + m)
    p(agent, b, d, c)         = (s + m * p(agent, b, d)) / (n + m)   the prior screening reads

with m = `strength` pseudo-outcomes. With no outcome at all the prior is 0.5, the seed's default. Pure: no I/O,
no clock; `to_dict` / `from_dict` persist it with the router state.

The table holds at most `max_keys` keys; a new key evicts the least recently updated one, so keys that stop
coming (a benchmark no longer run, junk labels) make room for live ones instead of holding the table forever.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router.screening import DEFAULT_PRIOR, PriorFunction

UNKNOWN = "unknown"
GENERAL = "general"
DEFAULT_STRENGTH = 4.0
MAX_KEYS = 20_000
_FORMAT = "symphony-edge/priors/v1"
_ANY = "*"

Key = tuple[str, str, str, str]


def normalise_difficulty(difficulty: str | None) -> str:
    """A task's difficulty label as priors key it: lower-case, `unknown` when absent ('easy' reads as simple)."""
    label = (difficulty or "").strip().lower()
    if not label:
        return UNKNOWN
    return "simple" if label == "easy" else label


class PriorTable:
    """Counts of successes and outcomes per (agent, benchmark, difficulty, capability) and its coarser levels."""

    def __init__(self, strength: float = DEFAULT_STRENGTH, max_keys: int = MAX_KEYS) -> None:
        if strength <= 0.0:
            raise ValueError("prior strength must be positive")
        self.strength = strength
        self.max_keys = max_keys
        self._counts: dict[Key, list[float]] = {}
        self._agents: set[str] = set()

    def __len__(self) -> int:
        return len(self._counts)

    def observe(
        self, agent_id: str, benchmark: str | None, difficulty: str | None, capability: str | None, success: bool
    ) -> None:
        """Count one outcome at every level of its key; past `max_keys`, the least recently updated keys go."""
        for key in _levels(agent_id, benchmark, difficulty, capability):
            counts = self._counts.pop(key, None)  # re-inserted last: the dict's order is the order of use
            if counts is None:
                while len(self._counts) >= self.max_keys:
                    del self._counts[next(iter(self._counts))]
                counts = [0.0, 0.0]
                self._agents.add(agent_id)
            self._counts[key] = counts
            counts[0] += float(success)
            counts[1] += 1.0

    def estimate(self, agent_id: str, benchmark: str | None, difficulty: str | None, capability: str | None) -> float:
        """The shrunken success estimate of the agent on this kind of task (0.5 with no outcome)."""
        value = DEFAULT_PRIOR
        for key in _levels(agent_id, benchmark, difficulty, capability):
            successes, trials = self._counts.get(key, (0.0, 0.0))
            value = (successes + self.strength * value) / (trials + self.strength)
        return value

    def for_capability(self, capability: str | None) -> PriorFunction:
        """The prior(agent_id, benchmark, difficulty) function screening reads, for one subtask capability.

        It also says which agents have outcomes (`known_agents`): every other one has the default prior, so
        screening a large fleet asks only about those.
        """
        return _CapabilityPrior(self, capability)

    def known_agents(self) -> set[str]:
        """The agents with at least one counted outcome."""
        return self._agents

    def outcomes(self, agent_id: str) -> int:
        """How many outcomes of the agent have been counted."""
        return int(self._counts.get((agent_id, _ANY, _ANY, _ANY), (0.0, 0.0))[1])

    def to_dict(self) -> dict[str, Any]:
        rows = [[*key, counts[0], counts[1]] for key, counts in self._counts.items()]
        return {"format": _FORMAT, "strength": self.strength, "counts": rows}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PriorTable:
        """Rebuild from `to_dict` output; raises ValueError on a foreign or malformed snapshot."""
        if data.get("format") != _FORMAT:
            raise ValueError(f"not a priors snapshot (format {data.get('format')!r})")
        table = cls(float(data.get("strength", DEFAULT_STRENGTH)))
        for row in data.get("counts", []):
            if len(row) != 6:
                raise ValueError(f"malformed priors row {row!r}")
            successes, trials = float(row[4]), float(row[5])
            if not 0.0 <= successes <= trials:
                raise ValueError(f"malformed priors row {row!r}")
            table._counts[(str(row[0]), str(row[1]), str(row[2]), str(row[3]))] = [successes, trials]
            table._agents.add(str(row[0]))
        return table


class _CapabilityPrior:
    """prior(agent_id, benchmark, difficulty) for one capability, with the agents that have outcomes."""

    def __init__(self, table: PriorTable, capability: str | None) -> None:
        self.table = table
        self.capability = capability

    def __call__(self, agent_id: str, benchmark: str, difficulty: str) -> float:
        return self.table.estimate(agent_id, benchmark, difficulty, self.capability)

    def known_agents(self) -> set[str]:
        return self.table.known_agents()


def _levels(agent_id: str, benchmark: str | None, difficulty: str | None, capability: str | None) -> list[Key]:
    """The keys of an outcome from the coarsest (the agent overall) to the finest."""
    bench = (benchmark or "").strip().lower() or UNKNOWN
    level = normalise_difficulty(difficulty)
    tag = (capability or "").strip().lower() or GENERAL
    return [
        (agent_id, _ANY, _ANY, _ANY),
        (agent_id, bench, _ANY, _ANY),
        (agent_id, bench, level, _ANY),
        (agent_id, bench, level, tag),
    ]
