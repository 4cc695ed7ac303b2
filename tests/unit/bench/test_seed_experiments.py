"""Exp2's shocks and Exp3's scenarios use the seed's parameters (seed-spec sections 3.4 and 3.6)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.experiments.exp2 import Exp2Config, Shock
from bench.experiments.exp3 import Exp3Config, scenario_parts
from bench.experiments.metrics import reroute_time
from bench.experiments.simulation import HARD, SEED_PROFILES, SIMPLE, Fleet


def test_exp2_uses_the_seeds_setup() -> None:
    config = Exp2Config()
    assert (config.p_hard, config.n_tasks, config.top_l, config.shock_at) == (0.7, 1000, 3, 500)


def test_a_unavailable_keeps_a_a_candidate_whose_calls_fail_at_twice_the_latency() -> None:
    fleet = Fleet(SEED_PROFILES)
    Shock("A_unavailable", at=0)(0, fleet, np.random.default_rng(0))
    a = fleet.index["A"]
    assert fleet.available[a] and a in fleet.screen(True, 3, "match")
    ok, latency = fleet.call(a, hard=False, uniform=0.0, normal=0.0, drifted=False)
    assert not ok and latency == pytest.approx(2 * 900.0)
    hard = {agent: fleet.success[fleet.index[agent], HARD] for agent in "CDE"}
    assert hard == pytest.approx({"C": 0.65 * 0.5, "D": 0.45 * 0.6, "E": 0.85 * 0.3})


def test_a_degraded_scales_a_and_its_backups_as_the_seed() -> None:
    fleet = Fleet(SEED_PROFILES)
    Shock("A_degraded", at=3)(3, fleet, np.random.default_rng(0))
    a = fleet.index["A"]
    assert fleet.success[a, SIMPLE] == pytest.approx(0.99 * 0.6)
    assert fleet.success[a, HARD] == pytest.approx(0.99 * 0.2)
    assert fleet.match[a, HARD] == pytest.approx(0.95 * 0.7)
    assert fleet.success[fleet.index["E"], HARD] == pytest.approx(0.85 * 0.4)


def test_exp3_scenarios_use_the_seeds_multipliers_match_scores_and_bursts() -> None:
    config = Exp3Config()
    assert config.p_hard == 0.2
    settings, events = scenario_parts(config, "combined")
    assert settings.latency_factor == (2.0, 0.6, 1.0, 0.8, 1.5)
    assert dict((p.agent_id, p.match) for p in settings.profiles)["B"] == (0.95, 0.60)
    fleet = Fleet(settings.profiles)
    b = fleet.index["B"]
    for t in range(302):
        for event in events:
            event(t, fleet, np.random.default_rng(0))
        fleet.decay()
    assert fleet.load[b] == pytest.approx(1.0) and not fleet.available[b]  # +0.8 from t = 300 saturates B
    for t in range(302, 501):
        for event in events:
            event(t, fleet, np.random.default_rng(0))
        fleet.decay()
    assert fleet.load[b] < 0.95 and fleet.available[b]  # the burst ends at t = 500
    assert scenario_parts(config, "latency_heterogeneous")[0].latency_factor == (2.5, 0.5, 1.0, 0.7, 1.8)
    with pytest.raises(ValueError, match="scenario"):
        scenario_parts(config, "nope")


def test_reroute_time_counts_tasks_until_the_shocked_agent_is_avoided() -> None:
    routed = [1] * 10 + [1] * 5 + [0] * 60
    assert reroute_time(routed, 10, window=50, share=0.1) == 1  # from t = 11 only 4 of 50 go to it
    assert reroute_time(routed, 10, window=50, share=0.01) == 5
    assert reroute_time([0] * 100, 10) == 0
    assert reroute_time([1] * 100, 10) is None
