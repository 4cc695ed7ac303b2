"""One episode: one policy routes one seed's task stream through a fresh simulated fleet.

Streams (all `numpy.random.default_rng([seed, stream, ...])`, independent of the policy's name except the last):

    [seed, 0]           the tasks (the same for every policy)
    [seed, 1]           the environment's luck (the same for every policy: common random numbers)
    [seed, 2]           scenario events such as load bursts (the same for every policy)
    [seed, 3, crc32]    the policy's own draws, keyed by the CRC-32 of its name
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bench.experiments.policies import Policy, Situation
from bench.experiments.simulation import (
    SEED_PROFILES,
    STRONG_AGENT,
    AgentProfile,
    Dynamics,
    Fleet,
    Luck,
    RewardWeights,
    Screening,
    generate_tasks,
    seed_reward,
)

Event = Callable[[int, Fleet, np.random.Generator], None]
"""event(t, fleet, rng): changes the fleet before step t is routed (shocks, bursts)."""


@dataclass(frozen=True)
class EpisodeSettings:
    """Everything that shapes an episode except the policy and the seed."""

    n_tasks: int = 1000
    p_hard: float = 0.223
    top_l: int = 3
    screening: Screening = "match"
    fallback: bool = False
    drift_at: int | None = None
    freeze_at: int | None = None
    profiles: tuple[AgentProfile, ...] = SEED_PROFILES
    dynamics: Dynamics = field(default_factory=Dynamics)
    latency_factor: tuple[float, ...] | None = None
    reward: RewardWeights = field(default_factory=RewardWeights)


@dataclass(frozen=True)
class Step:
    """One routed task; `agent` is "" when no agent was available (a deadlock)."""

    t: int
    hard: bool
    agent: str
    candidates: int
    success: bool
    latency_ms: float
    cost: float
    reward: float
    fallback: bool


@dataclass(frozen=True)
class Episode:
    """The steps of one episode and, per agent, its calls and its mean load over the steps."""

    policy: str
    seed: int
    steps: list[Step]
    calls: dict[str, int]
    mean_load: dict[str, float]


def stream(seed: int, *keys: int) -> np.random.Generator:
    """A generator for one named stream of one seed (see the module docstring)."""
    return np.random.default_rng([seed, *keys])


def policy_key(name: str) -> int:
    """A stable integer for a policy name (CRC-32; Python's hash() is salted per process)."""
    return zlib.crc32(name.encode())


def run_episode(
    policy: Policy, seed: int, settings: EpisodeSettings, events: tuple[Event, ...] = (), label: str | None = None
) -> Episode:
    """Route every task of `seed` with `policy` and record each step."""
    name = label or policy.name
    hard_tasks = generate_tasks(settings.n_tasks, settings.p_hard, stream(seed, 0))
    factor = np.array(settings.latency_factor) if settings.latency_factor else np.ones(len(settings.profiles))
    fleet = Fleet(settings.profiles, settings.dynamics, factor)
    luck = Luck.draw(settings.n_tasks, len(fleet.ids), stream(seed, 1))
    event_rng, policy_rng = stream(seed, 2), stream(seed, 3, policy_key(name))
    load_sum = np.zeros(len(fleet.ids))
    calls = np.zeros(len(fleet.ids), dtype=int)
    steps = []
    for t, hard in enumerate(hard_tasks.tolist()):
        for event in events:
            event(t, fleet, event_rng)
        fleet.decay()
        if t == settings.freeze_at:
            policy.freeze()
        load_sum += fleet.load
        situation = Situation(t, hard, fleet.screen(hard, settings.top_l, settings.screening), fleet)
        agent = policy.choose(situation, policy_rng)
        if agent is None:
            steps.append(Step(t, hard, "", len(situation.candidates), False, 0.0, 0.0, 0.0, False))
            continue
        steps.append(_execute(policy, situation, agent, luck, settings, calls))
    return Episode(
        policy=name,
        seed=seed,
        steps=steps,
        calls=dict(zip(fleet.ids, calls.tolist(), strict=True)),
        mean_load=dict(zip(fleet.ids, (load_sum / max(1, settings.n_tasks)).tolist(), strict=True)),
    )


def _execute(
    policy: Policy, situation: Situation, agent: int, luck: Luck, settings: EpisodeSettings, calls: np.ndarray
) -> Step:
    """Call the chosen agent (and the strong agent on failure when fallback is on); learn; record."""
    fleet, t, hard = situation.fleet, situation.t, situation.hard
    drifted = settings.drift_at is not None and t >= settings.drift_at
    ok, latency = fleet.call(agent, hard, luck.success[t, agent, 0], luck.latency[t, agent, 0], drifted)
    calls[agent] += 1
    cost = float(fleet.cost[agent])
    reward = seed_reward(ok, latency, cost, fleet.max_cost, settings.reward)
    policy.learn(situation, agent, reward, ok)
    strong = fleet.index[STRONG_AGENT]
    fell_back = settings.fallback and not ok and agent != strong
    final_ok, total_latency, total_cost = ok, latency, cost
    if fell_back:
        final_ok, extra = fleet.call(strong, hard, luck.success[t, strong, 1], luck.latency[t, strong, 1], drifted)
        calls[strong] += 1
        total_latency += extra
        total_cost += float(fleet.cost[strong])
    candidates = len(situation.candidates)
    return Step(t, hard, fleet.ids[agent], candidates, final_ok, total_latency, total_cost, reward, fell_back)
