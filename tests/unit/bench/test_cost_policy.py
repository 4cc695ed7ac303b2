"""The cost-aware policy: price against success, budgets, learning from outcomes, and its Exp1 target."""

from __future__ import annotations

import numpy as np
import pytest

from bench.experiments.episode import EpisodeSettings, run_episode
from bench.experiments.policies import make_policy
from router.cost_policy import CostAwarePolicy, CostPolicyConfig, Offer, task_kind

CHEAP = Offer("cheap", cost=0.1, prior=0.85)
DEAR = Offer("dear", cost=1.0, prior=0.95)


def test_a_small_gain_in_success_is_not_worth_ten_times_the_price() -> None:
    assert CostAwarePolicy().choose([DEAR, CHEAP], "gsm8k|easy").agent_id == "cheap"


def test_without_a_price_of_cost_the_likelier_agent_wins() -> None:
    policy = CostAwarePolicy(CostPolicyConfig(lam=0.0, latency_weight=0.0))
    assert policy.choose([CHEAP, DEAR], "gsm8k|easy").agent_id == "dear"


def test_a_task_budget_rules_out_dearer_agents_and_falls_back_to_the_cheapest() -> None:
    policy = CostAwarePolicy(CostPolicyConfig(lam=0.0))
    assert policy.choose([DEAR, CHEAP], "k", budget=0.5).affordable == ("cheap",)
    assert policy.choose([DEAR, Offer("mid", cost=0.7)], "k", budget=0.05).agent_id == "mid"
    with pytest.raises(ValueError, match="budget"):
        policy.choose([DEAR], "k", budget=-1.0)


def test_failures_move_traffic_away_from_an_agent() -> None:
    policy = CostAwarePolicy()
    assert policy.choose([CHEAP, Offer("other", cost=0.1, prior=0.7)], "k").agent_id == "cheap"
    for _ in range(10):
        policy.learn("cheap", "k", False)
    assert policy.success("cheap", "k", prior=0.85) < 0.4
    assert policy.choose([CHEAP, Offer("other", cost=0.1, prior=0.7)], "k").agent_id == "other"
    assert policy.success("cheap", "other-kind", prior=0.85) == pytest.approx(0.85)  # learned per task kind


def test_pacing_raises_the_price_of_cost_when_spending_over_budget() -> None:
    policy = CostAwarePolicy(CostPolicyConfig(budget_per_task=0.3))
    start = policy.lam
    for _ in range(20):
        policy.spend(1.0)
    assert policy.lam > start
    frozen = policy.freeze()
    frozen.learn("cheap", "k", True)
    frozen.spend(5.0)
    assert frozen.observations("cheap", "k") == 0 and frozen.lam == policy.lam


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="cost"):
        Offer("x", cost=-1.0)
    with pytest.raises(ValueError, match="offer"):
        CostAwarePolicy().choose([], "k")
    assert task_kind("GSM8K", None) == "gsm8k|any"


def test_exp1_reaches_the_seed_linucb_success_for_at_most_80_percent_of_its_cost() -> None:
    # Two seeds of the full 1000-task Exp1 (the 10-seed figures are in bench/RESULTS.md).
    settings = EpisodeSettings()
    totals: dict[str, tuple[float, float]] = {}
    for name in ("seed_linucb", "cost_aware"):
        episodes = [run_episode(make_policy(name), seed, settings) for seed in (123, 124)]
        success = float(np.mean([np.mean([s.success for s in e.steps]) for e in episodes]))
        cost = float(np.mean([sum(s.cost for s in e.steps) for e in episodes]))
        totals[name] = (success, cost)
    assert totals["cost_aware"][0] >= totals["seed_linucb"][0] - 0.005
    assert totals["cost_aware"][1] <= 0.8 * totals["seed_linucb"][1]
