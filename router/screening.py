"""Top-L screening of live agents for one subtask, as in the seed.

    score      = 0.5 * match + 0.35 * prior + 0.15 * stability
    stability  = 0.4 * (1 - load) + 0.4 * (1 - min(latency_ms, 2000) / 2000) + 0.2 * available

Only available agents are scored; the result holds at most L unique agents, best first, with ties broken by
agent id so the same inputs always give the same list. Scoring is vectorised over the agents (profiles of
capabilities and persona are cached), so screening 64 agents costs tens of microseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from router.candidates import DEFAULT_PRIOR, AgentView, LivePool
from router.capabilities import agent_profile, match_scores

PriorFunction = Callable[[str, str, str], float]
"""prior(agent_id, benchmark, difficulty) -> prior success estimate in [0, 1]."""
PriorSource = PriorFunction | Mapping[str, float] | None


@dataclass(frozen=True)
class ScreeningWeights:
    """Weights of the screening score and of its stability term (defaults are the seed's)."""

    match: float = 0.5
    prior: float = 0.35
    stability: float = 0.15
    idle: float = 0.4
    responsive: float = 0.4
    available: float = 0.2
    latency_cap_ms: float = 2000.0

    def __post_init__(self) -> None:
        values = (self.match, self.prior, self.stability, self.idle, self.responsive, self.available)
        if min(values) < 0.0:
            raise ValueError("screening weights must be non-negative")
        if self.latency_cap_ms <= 0.0:
            raise ValueError("latency_cap_ms must be positive")


@dataclass(frozen=True, slots=True)
class ScoredCandidate:
    """One screened agent with the parts of its score."""

    agent_id: str
    match: float
    prior: float
    stability: float
    score: float


def stability_score(
    load: float, latency_ms: float, available: bool, weights: ScreeningWeights = ScreeningWeights()
) -> float:
    """Return the seed's stability term for one agent (load clipped to [0, 1])."""
    idle = 1.0 - min(max(load, 0.0), 1.0)
    responsive = 1.0 - min(max(latency_ms, 0.0), weights.latency_cap_ms) / weights.latency_cap_ms
    return weights.idle * idle + weights.responsive * responsive + weights.available * float(available)


def screen(
    agents: Sequence[AgentView],
    requirement_text: str,
    required_tags: Sequence[str] = (),
    prior: PriorSource = None,
    benchmark: str = "",
    difficulty: str = "",
    top_l: int = 3,
    weights: ScreeningWeights = ScreeningWeights(),
) -> list[ScoredCandidate]:
    """Return the Top-L available agents for a requirement, best score first.

    `prior` is a mapping agent id -> prior, or a function (agent_id, benchmark, difficulty) -> prior;
    agents without one get 0.5. When an agent id appears twice, the later view wins. `agents` may be the
    registry's `LivePool`, screened over its arrays with the same formula and the same order.
    """
    if top_l < 1:
        return []
    if isinstance(agents, LivePool):  # the registry's indexed fleet: vectorised over its arrays
        found = agents.screen(requirement_text, tuple(required_tags), prior, benchmark, difficulty, top_l, weights)
        return [ScoredCandidate(*candidate) for candidate in found]
    live = _unique_available(agents)
    if not live:
        return []
    tag_matrix, text_matrix = _profile_matrices(tuple([(a.capabilities, a.persona) for a in live]))
    matches = match_scores(requirement_text, required_tags, tag_matrix, text_matrix)
    priors = _unit_interval(_priors(live, prior, benchmark, difficulty))
    stabilities = _stabilities(live, weights)
    scores = weights.match * matches + weights.prior * priors + weights.stability * stabilities
    order = _top_order(scores.tolist(), [agent.agent_id for agent in live], top_l)
    return [
        ScoredCandidate(live[i].agent_id, float(matches[i]), float(priors[i]), float(stabilities[i]), float(scores[i]))
        for i in order
    ]


def views_of(agents: Sequence[AgentView], agent_ids: Sequence[str]) -> dict[str, AgentView]:
    """The views of some agents by id; on the registry's pool only those views are built."""
    if isinstance(agents, LivePool):
        return agents.views_of(agent_ids)
    wanted = set(agent_ids)
    return {agent.agent_id: agent for agent in agents if agent.agent_id in wanted}


def _unique_available(agents: Sequence[AgentView]) -> list[AgentView]:
    """The available agents, one view per agent id (the later view wins)."""
    live = [agent for agent in agents if agent.available]
    if len({agent.agent_id for agent in live}) == len(live):
        return live
    return list({agent.agent_id: agent for agent in live}.values())


def _unit_interval(values: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] (np.clip costs twice as much on small arrays)."""
    return np.minimum(np.maximum(values, 0.0), 1.0)


@lru_cache(maxsize=64)
def _profile_matrices(profiles: tuple[tuple[tuple[str, ...], str], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Stack the cached profiles of a set of agents; cached because fleets change rarely."""
    built = [agent_profile(capabilities, persona) for capabilities, persona in profiles]
    return np.stack([p.tags for p in built]), np.stack([p.text for p in built])


def _priors(agents: list[AgentView], prior: PriorSource, benchmark: str, difficulty: str) -> np.ndarray:
    """Look up each agent's prior from a mapping or a function."""
    if prior is None:
        return np.full(len(agents), DEFAULT_PRIOR)
    if isinstance(prior, Mapping):
        return np.array([prior.get(agent.agent_id, DEFAULT_PRIOR) for agent in agents], dtype=float)
    return np.array([prior(agent.agent_id, benchmark, difficulty) for agent in agents], dtype=float)


def _stabilities(agents: list[AgentView], weights: ScreeningWeights) -> np.ndarray:
    """Vectorised `stability_score` over the agents (all of which are available)."""
    # One 2 x n array (load, latency share) keeps the number of numpy calls, which dominate here, low.
    state = np.array([[agent.load for agent in agents], [agent.latency_ms for agent in agents]], dtype=float)
    state *= _state_scale(weights.latency_cap_ms)
    np.maximum(state, 0.0, out=state)
    np.minimum(state, 1.0, out=state)
    constant = weights.idle + weights.responsive + weights.available
    return constant - np.array([weights.idle, weights.responsive]) @ state


@lru_cache(maxsize=8)
def _state_scale(latency_cap_ms: float) -> np.ndarray:
    """Column that scales (load, latency) rows to (load, latency / cap)."""
    return np.array([[1.0], [1.0 / latency_cap_ms]])


def _top_order(scores: list[float], agent_ids: list[str], top_l: int) -> list[int]:
    """Indices of the L best scores, ties broken by agent id."""
    if len(scores) > top_l:
        threshold = sorted(scores)[-top_l]
        contenders = [index for index, score in enumerate(scores) if score >= threshold]
    else:
        contenders = list(range(len(scores)))
    contenders.sort(key=lambda index: (-scores[index], agent_ids[index]))
    return contenders[:top_l]
