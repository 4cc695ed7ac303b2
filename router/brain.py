"""The router's learning state: per-agent LinUCB, per-agent reliability, learned priors, and the reward ledger.

`choose` screens the live agents (Top-L, with the learned prior of each agent for the task's benchmark,
difficulty and capability) and orders the candidates by LinUCB's upper confidence bound; `learn` joins a
delayed reward to the context recorded at dispatch and updates the arm and the agent's reliability (an
exponential average of its rewards, used as its vote weight); `observe` counts an outcome into the priors.
All three are saved together and survive a restart.

A state file that cannot be read (empty, cut short, not this format) is named in a warning, kept aside as
`<name>.corrupt-<timestamp>`, and the router learns from scratch: a bad file never keeps a router from starting.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from router.cost_policy import CostAwarePolicy, Offer, task_kind
from router.linucb import LinUCBConfig, LinUCBPolicy, context_features
from router.priors import PriorTable
from router.registry import DEFAULT_RELIABILITY
from router.rewards import RewardLedger
from router.screening import AgentView, ScoredCandidate, screen, views_of
from shared.files import set_aside, write_atomic

log = logging.getLogger(__name__)

RELIABILITY_RATE = 0.1


@dataclass(frozen=True)
class Choice:
    """One screened agent in the order LinUCB prefers, with the context it was scored on."""

    agent_id: str
    x: np.ndarray
    screening: ScoredCandidate
    ucb: float
    kind: str = ""


class RoutingBrain:
    """Selection and learning for one router (no I/O, randomness from the injected generator)."""

    def __init__(self, policy: LinUCBPolicy | None = None, seed: int = 0) -> None:
        self.policy = policy or LinUCBPolicy(LinUCBConfig())
        self.rng = np.random.default_rng(seed)
        self.reliability: dict[str, float] = {}
        self.priors = PriorTable()
        self.ledger = RewardLedger()
        self.cost_policy: CostAwarePolicy | None = None  # set: the cost-aware policy picks, LinUCB only orders
        self._kinds: dict[str, str] = {}

    def choose(
        self,
        agents: Sequence[AgentView],
        requirement: str,
        tags: Sequence[str] = (),
        top_l: int = 3,
        difficulty: str | None = None,
        benchmark: str | None = None,
        budget: float | None = None,
        max_tokens: int = 256,
    ) -> list[Choice]:
        """Top-L screening (priors of the first tag's capability), then the candidates ordered by LinUCB.

        With the cost-aware policy, a task's `budget` (cost units per run) rules out the agents whose price for
        a run of `max_tokens` tokens is above it, when any candidate fits.
        """
        prior = self.priors.for_capability(tags[0] if tags else None)
        candidates = screen(
            agents, requirement, tags, prior, benchmark=benchmark or "", difficulty=difficulty or "", top_l=top_l
        )
        if not candidates:
            return []
        views = views_of(agents, [c.agent_id for c in candidates])
        contexts = {c.agent_id: self._context(c, views[c.agent_id], difficulty) for c in candidates}
        selection = self.policy.select(contexts, self.rng)
        first, kind = selection.arm, task_kind(benchmark, difficulty)
        if self.cost_policy is not None:  # warm start from the announced capability match, as in the simulations
            offers = [
                Offer(c.agent_id, views[c.agent_id].cost_per_1k_tokens, views[c.agent_id].latency_ms, c.match)
                for c in candidates
            ]
            per_1k_budget = None if budget is None else budget * 1000 / max(1, max_tokens)
            first = self.cost_policy.choose(offers, kind, per_1k_budget).agent_id
        ordered = sorted(candidates, key=lambda c: (c.agent_id != first, -selection.ucb[c.agent_id]))
        return [Choice(c.agent_id, contexts[c.agent_id], c, selection.ucb[c.agent_id], kind) for c in ordered]

    def _context(self, candidate: ScoredCandidate, view: AgentView, difficulty: str | None) -> np.ndarray:
        return context_features(
            candidate.match,
            candidate.prior,
            candidate.stability,
            view.load,
            view.latency_ms,
            view.available,
            self.reliability.get(view.agent_id, DEFAULT_RELIABILITY),
            difficulty,
        )

    def record_dispatch(self, dispatch_id: str, choice: Choice) -> None:
        self.ledger.record(dispatch_id, choice.agent_id, choice.x)
        if self.cost_policy is not None:
            self._kinds[dispatch_id] = choice.kind

    def forget(self, dispatch_id: str) -> None:
        """Forget a dispatch that will not be rewarded, so the ledger holds only runs still awaiting one."""
        self.ledger.forget(dispatch_id)
        self._kinds.pop(dispatch_id, None)

    def learn(self, dispatch_id: str, reward: float) -> str | None:
        """Apply a delayed reward; returns the agent it was credited to (None for an unknown dispatch)."""
        joined = self.ledger.join(dispatch_id, reward)
        kind = self._kinds.pop(dispatch_id, "")
        if joined is None:
            return None
        if self.cost_policy is not None:
            self.cost_policy.learn(joined.agent_id, kind, joined.reward)
        if self.policy.config.frozen:
            return joined.agent_id  # evaluation mode: neither the bandit nor the vote weights learn
        self.policy.update(joined.agent_id, joined.x, joined.reward)
        previous = self.reliability.get(joined.agent_id, DEFAULT_RELIABILITY)
        self.reliability[joined.agent_id] = (1 - RELIABILITY_RATE) * previous + RELIABILITY_RATE * joined.reward
        return joined.agent_id

    def observe(
        self, agent_id: str, benchmark: str | None, difficulty: str | None, capability: str | None, success: bool
    ) -> None:
        """Count one run's outcome into the priors (nothing in the frozen evaluation mode)."""
        if not self.policy.config.frozen:
            self.priors.observe(agent_id, benchmark, difficulty, capability, success)

    def weight(self, agent_id: str) -> float:
        return self.reliability.get(agent_id, DEFAULT_RELIABILITY)

    def updates(self) -> int:
        """How many rewards LinUCB has learned from, over all agents."""
        return sum(self.policy.count(arm) for arm in self.policy.arms)

    # --- persistence ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = {"policy": self.policy.to_dict(), "reliability": dict(self.reliability), "priors": self.priors.to_dict()}
        if self.cost_policy is not None:
            data["cost_policy"] = self.cost_policy.snapshot()
        return data

    def save(self, path: Path) -> None:
        """Snapshot and write now, in the caller's thread (the router snapshots on its loop, see write_state)."""
        write_state(path, self.to_dict())

    @classmethod
    def load(
        cls, path: Path, seed: int = 0, frozen: bool = False, cost_policy: CostAwarePolicy | None = None
    ) -> RoutingBrain:
        """Load a saved brain, or a fresh one when the file does not exist or cannot be read (then set aside).

        `cost_policy` (the cost-aware policy's config) is restored from the file when it saved one.
        """
        brain = _read_state(path, seed) or cls(seed=seed)
        saved_costs = brain.cost_policy
        brain.cost_policy = cost_policy
        if cost_policy is not None and saved_costs is not None:
            cost_policy.restore(saved_costs.snapshot())
        if frozen:
            brain.policy = brain.policy.freeze()
            brain.cost_policy = cost_policy.freeze() if cost_policy is not None else None
        return brain

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], seed: int = 0) -> RoutingBrain:
        """Rebuild from `to_dict` output; raises ValueError (or KeyError, TypeError) on a malformed snapshot."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a router state is a JSON object, not {type(data).__name__}")
        brain = cls(LinUCBPolicy.from_dict(data["policy"]), seed=seed)
        brain.reliability = {str(k): float(v) for k, v in data.get("reliability", {}).items()}
        if "priors" in data:  # state files written before priors were learned have none
            brain.priors = PriorTable.from_dict(data["priors"])
        if "cost_policy" in data:  # saved by a router that ran the cost-aware policy
            brain.cost_policy = CostAwarePolicy().restore(data["cost_policy"])
        return brain


def write_state(path: Path, snapshot: Mapping[str, Any]) -> None:
    """Write a `to_dict` snapshot atomically; safe in a worker thread (the snapshot shares nothing with a brain)."""
    write_atomic(path, json.dumps(snapshot).encode())


def _read_state(path: Path, seed: int) -> RoutingBrain | None:
    """The brain saved in `path`; None when there is none, or when it is unreadable (set aside, with a warning)."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return RoutingBrain.from_dict(json.loads(text), seed=seed)
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # empty, cut short, foreign: start fresh
        kept = set_aside(path)
        log.warning(
            "router state file %s cannot be read (%s: %s); kept it as %s and learning from scratch",
            path,
            type(error).__name__,
            str(error)[:200] or "empty file",
            kept,
        )
        return None
