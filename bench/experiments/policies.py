"""Routing policies for the simulations: each chooses one agent (or none) for a task and may learn from it.

    always_A     the strong agent for everything
    static_rule  B for simple tasks, A for hard ones
    random       uniformly among all available agents
    random_topL  uniformly among the screened Top-L (the seed's exp1 "random")
    seed_linucb  the seed's one shared LinUCB over its d = 6 context (bench.experiments.seed_linucb)
    linucb       ours: router.linucb.LinUCBPolicy, one arm per agent, router.linucb.context_features
    cost_aware   ours: router.cost_policy.CostAwarePolicy (success - price - latency, warm-started from the
                 agents' announced match scores, learned from outcomes), spending 0.37 per task on average
    cost_aware_nobudget  the same with a fixed price of cost (no stream budget)

A fixed-choice policy whose agent is unavailable gets no agent: the task deadlocks and fails. Learning
policies are updated with the chosen agent's own outcome (before any fallback), as in the seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from bench.experiments.seed_linucb import SeedLinUCB, seed_context
from bench.experiments.simulation import HARD, SIMPLE, STRONG_AGENT, Fleet
from router.cost_policy import CostAwarePolicy, CostPolicyConfig, Offer
from router.linucb import LinUCBConfig, LinUCBPolicy, context_features

POLICY_NAMES: tuple[str, ...] = (
    "always_A",
    "static_rule",
    "random",
    "random_topL",
    "seed_linucb",
    "linucb",
    "cost_aware",
    "cost_aware_nobudget",
)


@dataclass(frozen=True)
class Situation:
    """What a policy sees at one step: the task, the screened candidates (best first) and the fleet."""

    t: int
    hard: bool
    candidates: list[int]
    fleet: Fleet


class Policy(Protocol):
    name: str

    def choose(self, situation: Situation, rng: np.random.Generator) -> int | None: ...

    def learn(self, situation: Situation, agent: int, reward: float, ok: bool) -> None: ...

    def freeze(self) -> None: ...


class _Fixed:
    """Base of the non-learning policies."""

    name = "fixed"

    def learn(self, situation: Situation, agent: int, reward: float, ok: bool) -> None:
        return None

    def freeze(self) -> None:
        return None

    @staticmethod
    def _if_available(situation: Situation, agent_id: str) -> int | None:
        agent = situation.fleet.index[agent_id]
        return agent if situation.fleet.available[agent] else None


class AlwaysStrong(_Fixed):
    name = "always_A"

    def choose(self, situation: Situation, rng: np.random.Generator) -> int | None:
        return self._if_available(situation, STRONG_AGENT)


class StaticRule(_Fixed):
    name = "static_rule"

    def choose(self, situation: Situation, rng: np.random.Generator) -> int | None:
        return self._if_available(situation, STRONG_AGENT if situation.hard else "B")


class RandomAvailable(_Fixed):
    name = "random"

    def choose(self, situation: Situation, rng: np.random.Generator) -> int | None:
        live = np.flatnonzero(situation.fleet.available)
        return int(live[rng.integers(live.size)]) if live.size else None


class RandomTopL(_Fixed):
    name = "random_topL"

    def choose(self, situation: Situation, rng: np.random.Generator) -> int | None:
        candidates = situation.candidates
        return candidates[int(rng.integers(len(candidates)))] if candidates else None


class SeedLinUCBRouting:
    """The seed's shared-model LinUCB over the screened candidates."""

    name = "seed_linucb"

    def __init__(self) -> None:
        self.model = SeedLinUCB()
        self.frozen = False
        self._contexts: dict[int, np.ndarray] = {}

    def choose(self, situation: Situation, rng: np.random.Generator) -> int | None:
        if not situation.candidates:
            return None
        fleet, column = situation.fleet, HARD if situation.hard else SIMPLE
        self._contexts = {
            agent: seed_context(
                float(fleet.match[agent, column]),
                float(fleet.load[agent]),
                float(fleet.latency_ms[agent]),
                float(fleet.reputation[agent]),
                bool(fleet.available[agent]),
            )
            for agent in situation.candidates
        }
        return situation.candidates[self.model.select(list(self._contexts.values()))]

    def learn(self, situation: Situation, agent: int, reward: float, ok: bool) -> None:
        if not self.frozen:
            self.model.update(self._contexts[agent], reward)

    def freeze(self) -> None:
        self.frozen = True


class OurLinUCBRouting:
    """router.linucb with one arm per agent; prior and reliability are the agent's reputation."""

    name = "linucb"

    def __init__(self, config: LinUCBConfig | None = None) -> None:
        self.policy = LinUCBPolicy(config)
        self._contexts: dict[str, np.ndarray] = {}

    def choose(self, situation: Situation, rng: np.random.Generator) -> int | None:
        if not situation.candidates:
            return None
        self._contexts = {situation.fleet.ids[agent]: self.context(situation, agent) for agent in situation.candidates}
        return situation.fleet.index[self.policy.select(self._contexts, rng).arm]

    @staticmethod
    def context(situation: Situation, agent: int) -> np.ndarray:
        """router.linucb.context_features of one candidate (difficulty "easy" or "hard")."""
        fleet = situation.fleet
        reputation = float(fleet.reputation[agent])
        return context_features(
            match=float(fleet.match[agent, HARD if situation.hard else SIMPLE]),
            prior=reputation,
            stability=fleet.stability(agent),
            load=float(fleet.load[agent]),
            latency_ms=float(fleet.latency_ms[agent]),
            available=bool(fleet.available[agent]),
            reliability=reputation,
            difficulty="hard" if situation.hard else "easy",
        )

    def learn(self, situation: Situation, agent: int, reward: float, ok: bool) -> None:
        arm = situation.fleet.ids[agent]
        self.policy.update(arm, self._contexts[arm], reward)

    def freeze(self) -> None:
        self.policy = self.policy.freeze()


SIM_BUDGET_PER_TASK = 0.37
"""The stream budget of cost_aware in the simulations: 80 % of the seed LinUCB's Exp1 cost (463 per 1000 tasks)."""


class CostAwareRouting:
    """router.cost_policy over the screened candidates; the prior is the agent's static match score.

    Its dual price is paced to SIM_BUDGET_PER_TASK per task (the knapsack budget of the stream).
    """

    name = "cost_aware"

    def __init__(self, config: CostPolicyConfig | None = None, name: str = "cost_aware") -> None:
        self.name = name
        self.policy = CostAwarePolicy(config or CostPolicyConfig(budget_per_task=SIM_BUDGET_PER_TASK))

    @staticmethod
    def kind(situation: Situation) -> str:
        return "hard" if situation.hard else "simple"

    def choose(self, situation: Situation, rng: np.random.Generator) -> int | None:
        if not situation.candidates:
            return None
        fleet, column = situation.fleet, HARD if situation.hard else SIMPLE
        offers = [
            Offer(
                fleet.ids[agent],
                cost=float(fleet.cost[agent]),
                latency_ms=float(fleet.latency_ms[agent]),
                prior=float(fleet.match[agent, column]),
            )
            for agent in situation.candidates
        ]
        return fleet.index[self.policy.choose(offers, self.kind(situation)).agent_id]

    def learn(self, situation: Situation, agent: int, reward: float, ok: bool) -> None:
        fleet = situation.fleet
        self.policy.learn(fleet.ids[agent], self.kind(situation), ok)
        self.policy.spend(float(fleet.cost[agent]))

    def freeze(self) -> None:
        self.policy = self.policy.freeze()


FACTORIES: dict[str, Callable[[], Policy]] = {
    "always_A": AlwaysStrong,
    "static_rule": StaticRule,
    "random": RandomAvailable,
    "random_topL": RandomTopL,
    "seed_linucb": SeedLinUCBRouting,
    "linucb": OurLinUCBRouting,
    "cost_aware": CostAwareRouting,
    "cost_aware_nobudget": lambda: CostAwareRouting(CostPolicyConfig(), name="cost_aware_nobudget"),
}


def make_policy(name: str) -> Policy:
    """A fresh policy by name (see POLICY_NAMES)."""
    try:
        return FACTORIES[name]()
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICY_NAMES)}") from None
