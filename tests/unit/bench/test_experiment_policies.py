"""Each routing policy of the simulations does what its name says."""

from __future__ import annotations

import numpy as np

from bench.experiments.episode import EpisodeSettings, run_episode
from bench.experiments.policies import OurLinUCBRouting, Situation, make_policy
from bench.experiments.simulation import SEED_PROFILES, Fleet

SETTINGS = EpisodeSettings(n_tasks=300)


def test_always_a_always_picks_a() -> None:
    episode = run_episode(make_policy("always_A"), 1, SETTINGS)
    assert {step.agent for step in episode.steps} == {"A"}
    assert sum(step.cost for step in episode.steps) == 300.0


def test_static_rule_sends_simple_tasks_to_b_and_hard_ones_to_a() -> None:
    episode = run_episode(make_policy("static_rule"), 2, SETTINGS)
    assert {step.agent for step in episode.steps if step.hard} == {"A"}
    assert {step.agent for step in episode.steps if not step.hard} == {"B"}
    assert any(step.hard for step in episode.steps) and not all(step.hard for step in episode.steps)


def test_random_top_l_stays_within_the_screened_candidates() -> None:
    episode = run_episode(make_policy("random_topL"), 3, SETTINGS)
    # By match, the Top-3 for simple tasks is B, D, A and for hard tasks A, E, C.
    assert {step.agent for step in episode.steps if not step.hard} == {"A", "B", "D"}
    assert {step.agent for step in episode.steps if step.hard} == {"A", "C", "E"}


def test_a_policy_with_nothing_available_deadlocks() -> None:
    fleet = Fleet(SEED_PROFILES)
    fleet.offline[:] = True
    fleet.decay()
    situation = Situation(0, True, fleet.screen(True, 3, "match"), fleet)
    for name in ("always_A", "static_rule", "random", "random_topL", "seed_linucb", "linucb"):
        assert make_policy(name).choose(situation, np.random.default_rng(0)) is None


def test_ours_learns_one_arm_per_agent_and_stops_learning_when_frozen() -> None:
    policy = make_policy("linucb")
    assert isinstance(policy, OurLinUCBRouting)
    episode = run_episode(policy, 4, EpisodeSettings(n_tasks=200, freeze_at=100))
    arms = policy.policy.arms
    assert set(arms) == {step.agent for step in episode.steps}
    assert sum(policy.policy.count(arm) for arm in arms) == 100
