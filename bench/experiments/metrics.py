"""Metrics of the experiments: Gini, rolling success, recovery time, and mean +- std over seeds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Values = Sequence[float] | np.ndarray
"""A series of numbers: a list or a numpy vector."""


def gini(values: Values) -> float:
    """Gini coefficient of non-negative values: 0 when all are equal, (n - 1) / n when one holds everything.

    Computed as sum_ij |x_i - x_j| / (2 n^2 mean); 0 for an empty or all-zero input.
    """
    data = np.asarray(values, dtype=float)
    if (data < 0.0).any():
        raise ValueError("gini needs non-negative values")
    if data.size == 0 or data.sum() <= 0.0:
        return 0.0
    differences = np.abs(data[:, None] - data[None, :]).sum()
    return float(differences / (2.0 * data.size**2 * data.mean()))


def rolling_mean(values: Values, window: int = 50) -> np.ndarray:
    """Trailing mean over the last `window` values (fewer at the start), as the seed's rolling success."""
    data = np.asarray(values, dtype=float)
    if window < 1:
        raise ValueError("window must be at least 1")
    sums = np.cumsum(np.concatenate([[0.0], data]))
    ends = np.arange(1, data.size + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def recovery_time(
    rolling: Values,
    shock_at: int,
    *,
    baseline_window: int = 200,
    drop_window: int = 100,
    min_drop: float = 0.08,
    ratio: float = 0.9,
    sustain: int = 50,
) -> int | None:
    """Steps from the shock until the rolling success is back, or None when it never dropped or never recovered.

    As the seed's strict definition: the baseline is the mean of the `baseline_window` values before the
    shock; there must be a drop of at least `min_drop` below it within `drop_window` steps of the shock;
    recovery is the first step from which `sustain` consecutive values are all >= ratio * baseline.
    Unlike the seed, the search starts at the trough (the lowest value of the drop window): a trailing
    rolling mean still holds pre-shock values just after the shock, and the seed counted those as an
    immediate "recovery" (time 0) for policies that had not fallen yet.
    """
    data = np.asarray(rolling, dtype=float)
    if shock_at < baseline_window or shock_at + sustain >= data.size:
        return None
    baseline = float(data[shock_at - baseline_window : shock_at].mean())
    dip = data[shock_at : shock_at + drop_window]
    if baseline - float(dip.min()) < min_drop:
        return None
    trough = shock_at + int(dip.argmin())
    good = data[trough:] >= ratio * baseline
    # Length of the run of good values starting at each step, computed from the end.
    run = np.zeros(good.size + 1, dtype=int)
    for index in range(good.size - 1, -1, -1):
        run[index] = run[index + 1] + 1 if good[index] else 0
    sustained = np.flatnonzero(run[: good.size] >= sustain)
    return trough - shock_at + int(sustained[0]) if sustained.size else None


def reroute_time(routed_to_target: Values, shock_at: int, *, window: int = 50, share: float = 0.1) -> int | None:
    """Tasks from the shock until the shocked agent gets less than `share` of the next `window` routings.

    `routed_to_target` holds 1 where a task went to the shocked agent. 0 when the policy already avoided it;
    None when it never does within the episode (the last full window).
    """
    data = np.asarray(routed_to_target, dtype=float)
    for start in range(shock_at, data.size - window + 1):
        if data[start : start + window].mean() < share:
            return start - shock_at
    return None


def mean_std(values: Values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return float("nan"), float("nan")
    return float(data.mean()), float(data.std(ddof=1)) if data.size > 1 else 0.0


def percentile(values: Values, q: float) -> float:
    """The q-th percentile (linear interpolation); nan for no values."""
    data = np.asarray(values, dtype=float)
    return float(np.percentile(data, q)) if data.size else float("nan")
