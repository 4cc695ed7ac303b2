"""Gini, rolling success and recovery time of the simulated experiments."""

from __future__ import annotations

import numpy as np
import pytest

from bench.experiments.metrics import gini, mean_std, recovery_time, rolling_mean


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1.0, 1.0, 1.0, 1.0], 0.0),
        ([0.0, 0.0, 0.0, 5.0], 0.75),
        ([0.0, 0.0, 0.0, 0.0, 2.0], 0.8),
        ([1.0, 3.0], 0.25),
        ([1.0, 2.0, 3.0, 4.0], 0.25),
        ([], 0.0),
        ([0.0, 0.0], 0.0),
    ],
)
def test_gini_table(values: list[float], expected: float) -> None:
    assert gini(values) == pytest.approx(expected)


def test_gini_rejects_negative_values() -> None:
    with pytest.raises(ValueError):
        gini([1.0, -1.0])


def test_rolling_mean_grows_its_window_at_the_start() -> None:
    assert rolling_mean([1, 0, 1, 1], window=2).tolist() == [1.0, 0.5, 0.5, 1.0]
    assert rolling_mean([1, 0, 1], window=10).tolist() == pytest.approx([1.0, 0.5, 2 / 3])


def curve(before: float, trough: float, after: float, shock_at: int = 300, dip: int = 40, n: int = 600) -> np.ndarray:
    """A V-shaped rolling-success curve: flat, a straight fall to the trough over `dip` steps, then a jump."""
    values = np.full(n, before)
    values[shock_at : shock_at + dip] = np.linspace(before, trough, dip)
    values[shock_at + dip :] = after
    return values


def test_recovery_time_counts_from_the_shock_to_a_sustained_return() -> None:
    # Baseline 0.9, target 0.81; the trough is at shock + 39, the curve is back at 0.85 from shock + 40.
    assert recovery_time(curve(0.9, 0.6, 0.85), shock_at=300) == 40


def test_no_drop_means_no_recovery() -> None:
    assert recovery_time(curve(0.9, 0.85, 0.9), shock_at=300) is None


def test_a_curve_that_stays_down_never_recovers() -> None:
    assert recovery_time(curve(0.9, 0.6, 0.7), shock_at=300) is None


def test_a_short_spike_is_not_a_recovery() -> None:
    values = curve(0.9, 0.6, 0.7)
    values[400:420] = 0.9  # 20 good steps, fewer than the 50 required
    values[500:] = 0.88
    assert recovery_time(values, shock_at=300) == 200


def test_pre_shock_values_just_after_the_shock_are_not_a_recovery() -> None:
    # A trailing mean holds its old level for a while after the shock; the seed called that "recovered at 0".
    values = np.full(600, 0.9)
    values[360:380] = np.linspace(0.9, 0.7, 20)
    values[380:] = 0.7
    values[450:] = 0.9
    assert recovery_time(values, shock_at=300) == 150


def test_recovery_needs_a_baseline_and_room_after_the_shock() -> None:
    assert recovery_time(curve(0.9, 0.6, 0.9, shock_at=100), shock_at=100) is None
    assert recovery_time(np.full(320, 0.9), shock_at=300) is None


def test_mean_std_of_one_value_has_zero_spread() -> None:
    assert mean_std([0.5]) == (0.5, 0.0)
    assert mean_std([1.0, 3.0]) == pytest.approx((2.0, 2**0.5))
