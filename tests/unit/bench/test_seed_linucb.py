"""The seed's shared LinUCB, reproduced as the baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.experiments.seed_linucb import SeedLinUCB, seed_context


def test_updates_equal_the_closed_form_ridge_solution() -> None:
    rng = np.random.default_rng(7)
    model = SeedLinUCB(lam=2.0)
    draws = rng.random((30, 4))
    contexts = [seed_context(m, load, 2000.0 * lat, rep, available=True) for m, load, lat, rep in draws.tolist()]
    rewards = rng.random(30)
    for x, reward in zip(contexts, rewards, strict=True):
        model.update(x, float(reward))
    design = np.array(contexts)
    a = 2.0 * np.eye(6) + design.T @ design
    b = design.T @ rewards
    assert model.a_inverse == pytest.approx(np.linalg.inv(a))
    assert model.theta() == pytest.approx(np.linalg.solve(a, b))
    assert model.t == 30


def test_beta_is_the_seeds_width_with_t_floored_at_one() -> None:
    model = SeedLinUCB()
    expected = math.sqrt(6 * math.log(2.0) + 2 * math.log(20.0)) + 1.0
    assert model.beta() == pytest.approx(expected)
    model.update(seed_context(0.5, 0.1, 400.0, 0.5, True), 1.0)
    assert model.beta() == pytest.approx(expected)
    model.update(seed_context(0.5, 0.1, 400.0, 0.5, True), 1.0)
    assert model.beta() == pytest.approx(math.sqrt(6 * math.log(3.0) + 2 * math.log(20.0)) + 1.0)


def test_ucb_is_mean_plus_width() -> None:
    model = SeedLinUCB()
    x = seed_context(0.9, 0.2, 800.0, 0.7, True)
    model.update(x, 0.8)
    variance = float(x @ model.a_inverse @ x)
    assert model.ucb(x) == pytest.approx(float(model.theta() @ x) + model.beta() * math.sqrt(variance))


def test_context_is_clipped_and_scaled_to_unit_length() -> None:
    x = seed_context(1.4, -0.2, 5000.0, 0.5, available=False)
    raw = np.array([1.0, 1.0, 0.0, 1.0, 0.5, 0.0])
    assert x == pytest.approx(raw / np.linalg.norm(raw))
    assert np.linalg.norm(x) == pytest.approx(1.0)


def test_select_keeps_the_first_of_equal_contexts() -> None:
    model = SeedLinUCB()
    x = seed_context(0.8, 0.0, 500.0, 0.5, True)
    assert model.select([x, x.copy(), x.copy()]) == 0
    with pytest.raises(ValueError):
        model.select([])
