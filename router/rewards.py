"""Rewards on one [0, 1] scale, and the ledger that joins delayed rewards to the context that earned them.

With the default `RewardWeights`:

    outcome = 0.7 * correct                 when correctness is known (gold answer or checker)
            = 0.5 * agreed_with_vote        otherwise (agreement is a weaker, cheaper signal)
    reward  = 0.2 * succeeded + 0.1 * well_formed + outcome
              - 0.15 * sqrt(min(latency_ms / 2000, 1))
              - 0.05 * min(cost / 1000, 1)
    clipped to [0, 1]

so a fast, well-formed, correct answer earns 1.0, a correct one always beats a merely agreeing one, and a
failed run earns 0. `cost` is in the caller's unit (tokens by default: 1000 tokens earn the full penalty).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class RewardInputs:
    """What is known about one run when its reward is computed."""

    succeeded: bool
    well_formed: bool
    agreed_with_vote: bool
    correct: bool | None = None
    latency_ms: float = 0.0
    cost: float = 0.0


@dataclass(frozen=True)
class RewardWeights:
    """Weights and scales of the reward formula (see the module docstring)."""

    success: float = 0.2
    format: float = 0.1
    agreement: float = 0.5
    correctness: float = 0.7
    latency: float = 0.15
    latency_scale_ms: float = 2000.0
    cost: float = 0.05
    cost_scale: float = 1000.0

    def __post_init__(self) -> None:
        if self.latency_scale_ms <= 0.0 or self.cost_scale <= 0.0:
            raise ValueError("reward scales must be positive")


def reward(inputs: RewardInputs, weights: RewardWeights = RewardWeights()) -> float:
    """The reward of one run in [0, 1] (formula in the module docstring)."""
    if inputs.correct is None:
        outcome = weights.agreement * float(inputs.agreed_with_vote)
    else:
        outcome = weights.correctness * float(inputs.correct)
    gained = weights.success * float(inputs.succeeded) + weights.format * float(inputs.well_formed) + outcome
    slowness = math.sqrt(min(max(inputs.latency_ms, 0.0) / weights.latency_scale_ms, 1.0))
    spending = min(max(inputs.cost, 0.0) / weights.cost_scale, 1.0)
    value = gained - weights.latency * slowness - weights.cost * spending
    return min(max(value, 0.0), 1.0)


class JoinedReward(NamedTuple):
    """A reward matched with the agent and context recorded when the run was dispatched."""

    agent_id: str
    x: np.ndarray
    reward: float


class RewardLedger:
    """Remembers the context of each dispatch until its reward arrives; holds at most `capacity` entries.

    When full, the oldest dispatch is forgotten (its reward, if it ever comes, is then ignored).
    """

    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._pending: OrderedDict[str, tuple[str, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, dispatch_id: object) -> bool:
        return dispatch_id in self._pending

    def record(self, dispatch_id: str, agent_id: str, x: np.ndarray) -> bool:
        """Remember the context a dispatch was chosen with; returns False (and keeps the first) on a repeat."""
        if dispatch_id in self._pending:
            return False
        self._pending[dispatch_id] = (agent_id, np.array(x, dtype=float))
        while len(self._pending) > self.capacity:
            self._pending.popitem(last=False)
        return True

    def forget(self, dispatch_id: str) -> None:
        """Drop a dispatch that will earn no reward (a cancelled run, a plan)."""
        self._pending.pop(dispatch_id, None)

    def join(self, dispatch_id: str, reward: float) -> JoinedReward | None:
        """Match a reward to its dispatch and forget the dispatch; None for unknown or already-joined ids."""
        entry = self._pending.pop(dispatch_id, None)
        if entry is None:
            return None
        agent_id, x = entry
        return JoinedReward(agent_id, x, float(reward))
