"""Disjoint LinUCB: closed form, learning per agent, persistence and frozen mode."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from router.linucb import FEATURE_NAMES, LinUCBConfig, LinUCBPolicy, context_features

DIMENSION = len(FEATURE_NAMES)


def features(rng: np.random.Generator) -> np.ndarray:
    """A random context with the bias term set."""
    x = rng.random(DIMENSION)
    x[0] = 1.0
    return x


def trained_policy(rng: np.random.Generator, rounds: int = 60) -> LinUCBPolicy:
    """A policy that has learned from random contexts and rewards on three arms."""
    policy = LinUCBPolicy()
    for step in range(rounds):
        policy.update(f"arm-{step % 3}", features(rng), float(rng.random()))
    return policy


def test_theta_equals_closed_form_ridge_solution() -> None:
    rng = np.random.default_rng(1)
    config = LinUCBConfig(lam=2.0)
    policy = LinUCBPolicy(config)
    seen: dict[str, list[tuple[np.ndarray, float]]] = {"a": [], "b": []}
    for step in range(80):
        arm = "a" if step % 3 else "b"
        x, reward = features(rng), float(rng.random())
        policy.update(arm, x, reward)
        seen[arm].append((x, reward))
    for arm, data in seen.items():
        xs = np.array([x for x, _ in data])
        rewards = np.array([reward for _, reward in data])
        a_matrix = config.lam * np.eye(DIMENSION) + xs.T @ xs
        expected = np.linalg.solve(a_matrix, xs.T @ rewards)
        np.testing.assert_allclose(policy.theta(arm), expected, rtol=1e-9, atol=1e-9)
        assert policy.count(arm) == len(data)


def test_unseen_arm_has_zero_theta_and_prior_width() -> None:
    config = LinUCBConfig()
    policy = LinUCBPolicy(config)
    x = np.ones(DIMENSION)
    selection = policy.select({"new": x}, np.random.default_rng(0))
    beta = math.sqrt(2 * math.log(1 / config.delta)) + 1.0  # alpha = lambda = S = 1, t = 0
    assert np.all(policy.theta("new") == 0.0)
    assert selection.mean["new"] == 0.0
    assert selection.width["new"] == pytest.approx(beta * math.sqrt(DIMENSION))
    assert policy.arms == []  # selecting does not create arms


def test_width_uses_the_seed_formula() -> None:
    config = LinUCBConfig(alpha=0.7, lam=1.5, delta=0.1, S=2.0)
    policy = LinUCBPolicy(config)
    x = np.zeros(DIMENSION)
    x[0] = 1.0
    for _ in range(5):
        policy.update("a", x, 1.0)
    radius = DIMENSION * math.log(1 + 5 / 1.5) + 2 * math.log(1 / 0.1)
    assert policy.beta("a") == pytest.approx(0.7 * math.sqrt(radius) + math.sqrt(1.5) * 2.0)
    selection = policy.select({"a": x}, np.random.default_rng(0))
    assert selection.width["a"] == pytest.approx(policy.beta("a") * math.sqrt(1 / (1.5 + 5)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_learns_which_agent_is_better_with_identical_contexts(seed: int) -> None:
    # Both agents look the same to the router; only per-agent learning can tell them apart.
    rng = np.random.default_rng(seed)
    policy = LinUCBPolicy()
    success = {"good": 0.8, "poor": 0.3}
    x = context_features(0.6, 0.5, 0.7, 0.2, 300.0, True, 0.5, "medium")
    picks = []
    for _ in range(300):
        arm = policy.select({"poor": x, "good": x}, rng).arm
        policy.update(arm, x, float(rng.random() < success[arm]))
        picks.append(arm)
    assert picks[-100:].count("good") >= 80


def test_ties_are_broken_by_the_injected_rng() -> None:
    policy = LinUCBPolicy()
    x = np.ones(DIMENSION)
    contexts = {name: x for name in ("a", "b", "c", "d")}
    picks = {policy.select(contexts, np.random.default_rng(seed)).arm for seed in range(40)}
    assert picks == {"a", "b", "c", "d"}
    first = [policy.select(contexts, np.random.default_rng(7)).arm for _ in range(5)]
    assert len(set(first)) == 1


def test_clear_winner_does_not_depend_on_rng() -> None:
    policy = LinUCBPolicy(LinUCBConfig(alpha=0.0, S=0.0))
    x = np.ones(DIMENSION)
    policy.update("best", x, 1.0)
    picks = {policy.select({"other": x, "best": x}, np.random.default_rng(seed)).arm for seed in range(20)}
    assert picks == {"best"}


def test_save_load_round_trip_gives_identical_selections(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    policy = trained_policy(rng)
    path = tmp_path / "state" / "linucb.json"
    policy.save(path)
    loaded = LinUCBPolicy.load(path)
    assert loaded.config == policy.config
    assert [p.name for p in path.parent.iterdir()] == ["linucb.json"]  # no temporary left behind
    for _ in range(20):
        contexts = {f"arm-{n}": features(rng) for n in range(4)}
        original = policy.select(contexts, np.random.default_rng(5))
        restored = loaded.select(contexts, np.random.default_rng(5))
        assert original == restored


def test_to_dict_is_json_and_rejects_foreign_data() -> None:
    policy = trained_policy(np.random.default_rng(4), rounds=6)
    data = json.loads(json.dumps(policy.to_dict()))
    assert sorted(data["arms"]) == ["arm-0", "arm-1", "arm-2"]
    with pytest.raises(ValueError):
        LinUCBPolicy.from_dict({"format": "something-else"})


def test_frozen_policy_ignores_updates_and_original_keeps_learning() -> None:
    rng = np.random.default_rng(6)
    policy = trained_policy(rng)
    frozen = policy.freeze()
    assert frozen.config.frozen and not policy.config.frozen
    before = frozen.theta("arm-0").copy()
    x = features(rng)
    frozen.update("arm-0", x, 1.0)
    frozen.update("brand-new", x, 1.0)
    np.testing.assert_array_equal(frozen.theta("arm-0"), before)
    assert frozen.arms == ["arm-0", "arm-1", "arm-2"]
    policy.update("arm-0", x, 1.0)
    assert not np.array_equal(policy.theta("arm-0"), before)
    np.testing.assert_array_equal(frozen.theta("arm-0"), before)


def test_many_arms_grow_storage() -> None:
    policy = LinUCBPolicy()
    x = np.ones(DIMENSION)
    for n in range(70):
        policy.update(f"agent-{n}", x, n / 70)
    assert len(policy.arms) == 70
    assert policy.select({f"agent-{n}": x for n in range(70)}, np.random.default_rng(0)).arm == "agent-69"


def test_wrong_dimension_is_rejected() -> None:
    policy = LinUCBPolicy()
    with pytest.raises(ValueError):
        policy.update("a", np.ones(3), 1.0)
    with pytest.raises(ValueError):
        policy.select({"a": np.ones(3)}, np.random.default_rng(0))
    with pytest.raises(ValueError):
        policy.select({}, np.random.default_rng(0))


@pytest.mark.parametrize("bad", [{"lam": 0.0}, {"delta": 1.5}, {"alpha": -1.0}, {"dimension": 0}, {"gamma": 1.0}])
def test_config_is_validated(bad: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        LinUCBConfig.model_validate(bad)


def test_config_is_immutable() -> None:
    config = LinUCBConfig()
    with pytest.raises(ValidationError):
        setattr(config, "alpha", 2.0)  # noqa: B010 - assignment is what is being tested


def test_context_features() -> None:
    x = context_features(0.9, 0.6, 0.7, 0.25, 500.0, True, 0.8, "hard")
    assert x.shape == (DIMENSION,)
    np.testing.assert_allclose(x, [1.0, 0.9, 0.6, 0.7, 0.75, 0.75, 0.8, 0.75])
    offline = context_features(0.9, 0.6, 0.7, 0.25, 5000.0, False, 0.8, 0.3)
    assert (offline[4], offline[5], offline[7]) == (0.0, 0.0, 0.3)
    assert context_features(0, 0, 0, 0, 0, True, 0, None)[7] == 0.5


def test_difficulty_simple_is_not_read_as_unknown() -> None:
    def features(difficulty: str | None) -> np.ndarray:
        return context_features(0.5, 0.5, 0.5, 0.0, 100.0, True, 0.5, difficulty)

    position = FEATURE_NAMES.index("difficulty")
    assert features("simple")[position] < features(None)[position] < features("hard")[position]
    assert np.array_equal(features("simple"), features("easy"))
