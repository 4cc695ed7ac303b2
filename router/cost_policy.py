"""A cost-aware routing policy: estimated success minus the price of asking, under an optional budget.

Pure logic (no I/O): the live router and the simulated experiments feed it the same inputs.

Why not the seed's LinUCB: it learns one blended reward (success - 0.15 cost - 0.2 sqrt(latency)), in which
cost is a small term it must rediscover, and it explores every Top-L agent on every kind of task. This policy
keeps the three things apart, as MixLLM does (quality estimate, cost penalty, latency penalty), and starts
warm, as PILOT does (its bandit is warm-started from offline preference data):

    p_hat(a, k)  = (s + n0 * prior) / (n + n0)          per agent a and task kind k (benchmark|difficulty),
                   with s, n discounted by `forget` at every observation of (a, k), so a shock is seen
                   within a few tens of tasks, and prior = the agent's announced match or learned prior
    bonus(a, k)  = explore * sqrt(1 / (n + n0))          optimism for little-tried pairs
    score(a)     = p_hat + bonus - lam * cost_a / cost_ref - latency_weight * min(1, latency_a / 2000)

The agent with the highest score wins (ties: the cheaper, then the first). Budgets, PILOT's knapsack view:

    per task     a task's `budget` (in cost units) rules out candidates whose price is above it; when none
                 fits, the cheapest candidate is used
    per stream   with `budget_per_task` set, lam is a dual price paced online (projected gradient):
                 lam <- clip(lam + pace * (spent - budget_per_task) / cost_ref, 0, lam_max)
                 so the policy spends about `budget_per_task` on average and buys success where it is cheap

Learning uses the outcome (success 1/0; or agreement with the vote where there is no gold answer), not the
blended reward, so the success estimate stays a probability.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

LATENCY_SCALE_MS = 2000.0


class CostPolicyConfig(BaseModel):
    """Immutable, validated settings of the cost-aware policy (defaults tuned on Exp1, see bench/RESULTS.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lam: float = Field(default=0.15, ge=0.0, description="Price of one cost_ref of cost, in success units.")
    latency_weight: float = Field(default=0.05, ge=0.0, description="Penalty of a 2 s latency, in success units.")
    explore: float = Field(default=0.02, ge=0.0, description="Optimism bonus scale.")
    prior_weight: float = Field(default=4.0, gt=0.0, description="Pseudo-observations behind the prior (n0).")
    forget: float = Field(default=0.99, gt=0.0, le=1.0, description="Discount per observation of (agent, kind).")
    cost_ref: float = Field(default=1.0, gt=0.0, description="The cost that counts as 1 (the fleet's top price).")
    budget_per_task: float | None = Field(default=None, gt=0.0, description="Pace lam to this mean spend.")
    pace: float = Field(default=0.02, ge=0.0, description="Step of the dual price update.")
    lam_max: float = Field(default=2.0, ge=0.0)
    frozen: bool = False


@dataclass(frozen=True, slots=True)
class Offer:
    """One candidate as the policy sees it: its price per task, its latency and its announced prior success."""

    agent_id: str
    cost: float
    latency_ms: float = 0.0
    prior: float = 0.5

    def __post_init__(self) -> None:
        if self.cost < 0.0 or not math.isfinite(self.cost):
            raise ValueError(f"cost of {self.agent_id!r} must be a finite number >= 0, got {self.cost}")


@dataclass(frozen=True, slots=True)
class Choice:
    """The chosen agent and each candidate's score parts (for traces and tests)."""

    agent_id: str
    score: dict[str, float]
    success: dict[str, float]
    affordable: tuple[str, ...]


@dataclass
class _Tally:
    """Discounted successes and observations of one (agent, kind)."""

    successes: float = 0.0
    count: float = 0.0


@dataclass
class CostAwarePolicy:
    """Select by estimated success - price - latency; learn success per (agent, kind); pace a budget."""

    config: CostPolicyConfig = field(default_factory=CostPolicyConfig)

    def __post_init__(self) -> None:
        self.lam = self.config.lam
        self._tallies: dict[tuple[str, str], _Tally] = {}

    def success(self, agent_id: str, kind: str, prior: float) -> float:
        """The warm-started, discounted success estimate of `agent_id` on tasks of `kind`."""
        tally = self._tallies.get((agent_id, kind), _Tally())
        weight = self.config.prior_weight
        return (tally.successes + weight * _clip01(prior)) / (tally.count + weight)

    def observations(self, agent_id: str, kind: str) -> float:
        """The discounted number of outcomes learned for (agent, kind)."""
        return self._tallies.get((agent_id, kind), _Tally()).count

    def choose(self, offers: Sequence[Offer], kind: str, budget: float | None = None) -> Choice:
        """Pick one offer for a task of `kind`; `budget` (cost units) excludes dearer offers when any fits."""
        if not offers:
            raise ValueError("choose needs at least one offer")
        if budget is not None and budget < 0.0:
            raise ValueError(f"budget must be >= 0, got {budget}")
        affordable = [offer for offer in offers if budget is None or offer.cost <= budget]
        if not affordable:
            affordable = [min(offers, key=lambda offer: offer.cost)]
        config = self.config
        success: dict[str, float] = {}
        score: dict[str, float] = {}
        for offer in affordable:
            estimate = self.success(offer.agent_id, kind, offer.prior)
            bonus = config.explore * math.sqrt(1.0 / (self.observations(offer.agent_id, kind) + config.prior_weight))
            slowness = min(1.0, max(0.0, offer.latency_ms) / LATENCY_SCALE_MS)
            success[offer.agent_id] = estimate
            score[offer.agent_id] = (
                estimate + bonus - self.lam * offer.cost / config.cost_ref - config.latency_weight * slowness
            )
        best = max(affordable, key=lambda offer: (score[offer.agent_id], -offer.cost))
        return Choice(best.agent_id, score, success, tuple(offer.agent_id for offer in affordable))

    def learn(self, agent_id: str, kind: str, ok: bool | float) -> None:
        """Learn one outcome (1 success, 0 failure, or a fraction) of `agent_id` on a task of `kind`."""
        if self.config.frozen:
            return
        value = _clip01(float(ok))
        tally = self._tallies.setdefault((agent_id, kind), _Tally())
        tally.successes = self.config.forget * tally.successes + value
        tally.count = self.config.forget * tally.count + 1.0

    def spend(self, cost: float) -> None:
        """Account for what one task cost; with a budget per task this moves the dual price lam."""
        target = self.config.budget_per_task
        if target is None or self.config.frozen:
            return
        step = self.config.pace * (cost - target) / self.config.cost_ref
        self.lam = min(max(self.lam + step, 0.0), self.config.lam_max)

    def freeze(self) -> CostAwarePolicy:
        """A frozen copy (same estimates, no more learning or pacing)."""
        frozen = CostAwarePolicy(self.config.model_copy(update={"frozen": True}))
        frozen.lam = self.lam
        frozen._tallies = {key: _Tally(t.successes, t.count) for key, t in self._tallies.items()}
        return frozen

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready view: lam and the tallies as 'agent kind' -> [successes, count]."""
        tallies = {f"{agent} {kind}": [t.successes, t.count] for (agent, kind), t in self._tallies.items()}
        return {"lam": self.lam, "tallies": tallies}

    def restore(self, snapshot: Mapping[str, Any]) -> CostAwarePolicy:
        """Load what `snapshot` saved into this policy (its config stays); returns self."""
        self.lam = float(snapshot.get("lam", self.config.lam))
        self._tallies = {}
        for key, (successes, count) in snapshot.get("tallies", {}).items():
            agent, _, kind = str(key).partition(" ")
            self._tallies[(agent, kind)] = _Tally(float(successes), float(count))
        return self


def task_kind(benchmark: str | None, difficulty: str | None) -> str:
    """The key success is learned under: 'benchmark|difficulty' (unknown parts read 'any')."""
    return f"{(benchmark or 'any').strip().lower() or 'any'}|{(difficulty or 'any').strip().lower() or 'any'}"


def price_of(costs: Mapping[str, float], agent_id: str, tokens: int, default: float = 0.0) -> float:
    """The price of `tokens` tokens on an agent announcing `costs[agent_id]` per 1k tokens."""
    return costs.get(agent_id, default) * max(0, tokens) / 1000.0


def _clip01(value: float) -> float:
    return min(max(value, 0.0), 1.0)
