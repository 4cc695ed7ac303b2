"""Figures of the experiments, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (imported late: only the experiments that plot need it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_recovery_curves(
    curves: Mapping[str, Mapping[str, np.ndarray]], shock_at: int, window: int, path: Path
) -> Path:
    """One panel per shock: each policy's rolling success (mean over seeds) with the shock marked."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(curves), figsize=(6.5 * len(curves), 4.2), squeeze=False, sharey=True)
    for axis, (shock, by_policy) in zip(axes[0], curves.items(), strict=True):
        for policy, curve in by_policy.items():
            axis.plot(np.arange(curve.size), curve, linewidth=1.3, label=policy)
        axis.axvline(shock_at, color="red", linestyle="--", linewidth=1.2, label=f"shock (t = {shock_at})")
        axis.set_title(shock)
        axis.set_xlabel("task")
        axis.grid(True, alpha=0.3)
    axes[0][0].set_ylabel(f"rolling success ({window} tasks, mean over seeds)")
    axes[0][-1].legend(loc="lower left", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_scenario_bars(summary: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Grouped bars per scenario and policy: success, p95 latency, total cost and Gini of calls."""
    plt = _pyplot()
    scenarios = list(dict.fromkeys(row["scenario"] for row in summary))
    policies = list(dict.fromkeys(row["policy"] for row in summary))
    metrics = [
        ("success_rate_mean", "success rate"),
        ("latency_p95_ms", "p95 latency (ms)"),
        ("total_cost_mean", "total cost"),
        ("utilization_gini", "Gini of calls"),
    ]
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 4.0))
    width = 0.8 / max(1, len(policies))
    positions = np.arange(len(scenarios))
    for axis, (key, label) in zip(axes, metrics, strict=True):
        for offset, policy in enumerate(policies):
            values = [_value(summary, scenario, policy, key) for scenario in scenarios]
            axis.bar(positions + offset * width, values, width, label=policy)
        axis.set_xticks(positions + width * (len(policies) - 1) / 2)
        axis.set_xticklabels(scenarios, rotation=20, ha="right", fontsize=8)
        axis.set_title(label)
        axis.grid(True, axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(policies), fontsize=8, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout(rect=(0.0, 0.07, 1.0, 1.0))
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _value(summary: Sequence[Mapping[str, Any]], scenario: str, policy: str, key: str) -> float:
    for row in summary:
        if row["scenario"] == scenario and row["policy"] == policy:
            return float(row[key])
    return float("nan")


def plot_cost_success(summary: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Exp1's trade-off: each policy's total cost against its success rate (mean +- std over seeds)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7.0, 4.6))
    for row in summary:
        axis.errorbar(
            row["total_cost_mean"],
            row["success_rate_mean"],
            xerr=row["total_cost_std"],
            yerr=row["success_rate_std"],
            fmt="o",
            capsize=3,
            label=row["policy"],
        )
        axis.annotate(
            row["policy"],
            (row["total_cost_mean"], row["success_rate_mean"]),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    axis.set_xlabel("total cost per 1000 tasks")
    axis.set_ylabel("success rate")
    axis.set_title("Exp1: success against cost (mean +- std over seeds)")
    axis.grid(True, alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
