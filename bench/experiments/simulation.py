"""The seed's simulated fleet (Symphony 2.0, `experiments/exp1_sim_efficiency_cost`): agents, dynamics, tasks.

Five agent profiles (cost, base latency, success probability and capability match, each for simple and hard
tasks). Per step, before routing, every agent's load decays (x 0.88) and an agent is available while its load
is below 0.95. A call to an agent samples

    latency  = max(10, m + N(0, (0.08 m)^2))      with m = base_latency * (1 + 1.2 load)
    success  ~ Bernoulli(p * (1 - 0.05 load))      (with drift from t_drift: A x 0.92, B's hard p + 0.20 <= 0.85)

and then moves the agent's state: latency EMA (0.2), reputation EMA (0.95 / 0.05), load + 0.30 (clipped to 1).

Assumptions where the seed's code is silent or where we depart from it:

* Common random numbers: the uniforms and normals for every (task, agent, call) are drawn up front from the
  seed's environment stream, so two policies that send the same task to the same agent in the same state see
  the same outcome. The seed drew them from one `random.Random` in call order.
* Screening filters available agents first, then keeps the Top-L (as the seed's exp3 and router.screening do);
  the seed's exp1 kept the Top-L first, but at decision time every agent has just decayed below 0.95, so the
  two orders differ only under shocks and bursts.
* `screening="match"` ranks by the static match score as the seed's simulations did; `screening="score"` uses
  the design's 0.5 match + 0.35 prior + 0.15 stability with prior = the agent's reputation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from router.screening import ScreeningWeights

Screening = Literal["match", "score"]
SIMPLE, HARD = 0, 1
LATENCY_SCALE_MS = 2000.0


@dataclass(frozen=True)
class AgentProfile:
    """Static facts about one simulated agent; the pairs are (simple, hard)."""

    agent_id: str
    cost: float
    base_latency_ms: float
    success: tuple[float, float]
    match: tuple[float, float]


SEED_PROFILES: tuple[AgentProfile, ...] = (
    AgentProfile("A", 1.00, 900.0, (0.99, 0.99), (0.80, 0.95)),  # strong, expensive
    AgentProfile("B", 0.10, 350.0, (0.88, 0.18), (0.95, 0.20)),  # cheap, good only at simple tasks
    AgentProfile("C", 0.35, 550.0, (0.92, 0.65), (0.75, 0.75)),  # medium
    AgentProfile("D", 0.22, 420.0, (0.90, 0.45), (0.85, 0.55)),  # fast
    AgentProfile("E", 0.60, 780.0, (0.95, 0.85), (0.60, 0.90)),  # hard-task specialist
)
STRONG_AGENT = "A"


@dataclass(frozen=True)
class Dynamics:
    """The constants of the seed's agent dynamics."""

    load_decay: float = 0.88
    load_per_call: float = 0.30
    unavailable_load: float = 0.95
    latency_load_factor: float = 1.2
    latency_noise: float = 0.08
    success_load_penalty: float = 0.05
    latency_ema: float = 0.20
    reputation_ema: float = 0.05


@dataclass(frozen=True)
class RewardWeights:
    """The seed's simulation reward: clip01(ok - latency * sqrt(lat / scale) - cost * cost / max_cost)."""

    latency: float = 0.2
    cost: float = 0.15
    latency_scale_ms: float = LATENCY_SCALE_MS


def seed_reward(ok: bool, latency_ms: float, cost: float, max_cost: float, weights: RewardWeights) -> float:
    """The reward the seed's simulations fed to LinUCB (also used for ours, so the two learn from the same signal)."""
    slowness = math.sqrt(min(1.0, latency_ms / max(1.0, weights.latency_scale_ms)))
    value = float(ok) - weights.latency * slowness - weights.cost * cost / max(1e-9, max_cost)
    return min(max(value, 0.0), 1.0)


def generate_tasks(n_tasks: int, p_hard: float, rng: np.random.Generator) -> np.ndarray:
    """A boolean vector, True where the task is hard."""
    return rng.random(n_tasks) < p_hard


@dataclass(frozen=True)
class Luck:
    """Pre-drawn randomness of the environment: [task, agent, call] with call 0 = routed, 1 = fallback."""

    success: np.ndarray
    latency: np.ndarray

    @classmethod
    def draw(cls, n_tasks: int, n_agents: int, rng: np.random.Generator) -> Luck:
        shape = (n_tasks, n_agents, 2)
        return cls(success=rng.random(shape), latency=rng.standard_normal(shape))


@dataclass
class Fleet:
    """The dynamic state of the simulated agents, as arrays indexed like `profiles`.

    `offline` forces an agent unavailable (a shock); `load_boost` is outside traffic added after each decay (a burst);
    `success` (the (simple, hard) success probabilities) and `match` may be rescaled by a shock;
    `failing` keeps an agent a candidate whose every call fails at twice the latency (the seed's A_unavailable).
    """

    profiles: tuple[AgentProfile, ...]
    dynamics: Dynamics = field(default_factory=Dynamics)
    latency_factor: np.ndarray = field(default_factory=lambda: np.ones(0))

    def __post_init__(self) -> None:
        count = len(self.profiles)
        if self.latency_factor.size == 0:
            self.latency_factor = np.ones(count)
        self.ids = [profile.agent_id for profile in self.profiles]
        self.index = {agent_id: position for position, agent_id in enumerate(self.ids)}
        self.cost = np.array([p.cost for p in self.profiles])
        self.base_latency = np.array([p.base_latency_ms for p in self.profiles]) * self.latency_factor
        self.success = np.array([p.success for p in self.profiles], dtype=float)
        self.match = np.array([p.match for p in self.profiles], dtype=float)
        self.load = np.zeros(count)
        self.latency_ms = self.base_latency.copy()
        self.reputation = np.full(count, 0.5)
        self.offline = np.zeros(count, dtype=bool)
        self.failing = np.zeros(count, dtype=bool)
        self.load_boost = np.zeros(count)
        self.available = np.ones(count, dtype=bool)

    @property
    def max_cost(self) -> float:
        return float(self.cost.max())

    def decay(self) -> None:
        """The per-step queue drain, outside traffic, and the availability that follows from them."""
        self.load = np.minimum(self.load * self.dynamics.load_decay + self.load_boost, 1.0)
        self._refresh_availability()

    def success_probability(self, agent: int, hard: bool, drifted: bool) -> float:
        """The agent's success probability now (load penalty, then the seed's drift)."""
        base = self.success[agent, HARD if hard else SIMPLE]
        base *= 1.0 - self.dynamics.success_load_penalty * min(max(self.load[agent], 0.0), 1.0)
        if drifted and self.ids[agent] == "A":
            base *= 0.92
        if drifted and self.ids[agent] == "B" and hard:
            base = min(0.85, base + 0.20)
        return min(max(float(base), 0.0), 1.0)

    def call(self, agent: int, hard: bool, uniform: float, normal: float, drifted: bool) -> tuple[bool, float]:
        """Run one task on `agent` with the given luck; returns (succeeded, latency_ms) and moves its state."""
        dynamics = self.dynamics
        mean = self.base_latency[agent] * (1.0 + dynamics.latency_load_factor * min(max(self.load[agent], 0.0), 1.0))
        latency = max(10.0, mean + normal * dynamics.latency_noise * mean)
        ok = uniform < self.success_probability(agent, hard, drifted)
        if self.failing[agent]:
            ok, latency = False, 2.0 * latency
        self.latency_ms[agent] += dynamics.latency_ema * (latency - self.latency_ms[agent])
        self.reputation[agent] += dynamics.reputation_ema * (float(ok) - self.reputation[agent])
        self.load[agent] = min(1.0, self.load[agent] + dynamics.load_per_call)
        self._refresh_availability()
        return bool(ok), float(latency)

    def screen(self, hard: bool, top_l: int, screening: Screening) -> list[int]:
        """The available agents' Top-L for a task, best first (ties by agent id)."""
        live = [agent for agent in range(len(self.ids)) if self.available[agent]]
        scores = {agent: self.screening_score(agent, hard, screening) for agent in live}
        live.sort(key=lambda agent: (-scores[agent], self.ids[agent]))
        return live[:top_l]

    def screening_score(self, agent: int, hard: bool, screening: Screening) -> float:
        """Static match (the seed's simulations), or the design's weighted score with prior = reputation."""
        match = float(self.match[agent, HARD if hard else SIMPLE])
        if screening == "match":
            return match
        weights = ScreeningWeights()
        return (
            weights.match * match
            + weights.prior * float(self.reputation[agent])
            + weights.stability * (self.stability(agent))
        )

    def stability(self, agent: int) -> float:
        """The seed's stability term (router.screening.stability_score) of one agent."""
        weights = ScreeningWeights()
        idle = 1.0 - min(max(float(self.load[agent]), 0.0), 1.0)
        responsive = 1.0 - min(float(self.latency_ms[agent]), weights.latency_cap_ms) / weights.latency_cap_ms
        return weights.idle * idle + weights.responsive * responsive + weights.available * float(self.available[agent])

    def _refresh_availability(self) -> None:
        self.available = (self.load < self.dynamics.unavailable_load) & ~self.offline
