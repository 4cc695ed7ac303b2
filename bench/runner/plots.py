"""Figures of a run (matplotlib, Agg backend): accuracy per phase and variant, and LinUCB's choices."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.runner.config import PHASES


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def write_plots(out: Path, records: Sequence[dict[str, Any]], trace: Sequence[dict[str, Any]]) -> list[Path]:
    """accuracy.png and agent_choices.png (none when there is nothing to draw)."""
    if not records:
        return []
    return [plot_accuracy(out / "accuracy.png", records), plot_choices(out / "agent_choices.png", trace)]


def plot_accuracy(path: Path, records: Sequence[dict[str, Any]]) -> Path:
    pyplot = _pyplot()
    groups: dict[tuple[str, str], list[bool]] = {}
    for record in records:
        groups.setdefault((record["phase"], record["variant"]), []).append(bool(record["correct"]))
    keys = sorted(groups, key=lambda key: (PHASES.index(key[0]), key[1]))
    figure, axes = pyplot.subplots(figsize=(max(4.0, 1.4 * len(keys) + 2), 3.5))
    values = [100.0 * sum(groups[key]) / len(groups[key]) for key in keys]
    bars = axes.bar([f"{phase}\n{variant}" for phase, variant in keys], values, color="#4c72b0")
    for bar, key in zip(bars, keys, strict=True):
        label = f"{sum(groups[key])}/{len(groups[key])}"
        axes.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom")
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, max(10.0, max(values) * 1.25))
    axes.set_title("accuracy per phase and variant")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return path


def plot_choices(path: Path, trace: Sequence[dict[str, Any]]) -> Path:
    """Cumulative share of runs each agent got, over the tasks in run order (all phases and variants)."""
    pyplot = _pyplot()
    agents = sorted({agent for entry in trace for agent in entry.get("chosen", [])})
    counts = dict.fromkeys(agents, 0)
    shares: dict[str, list[float]] = {agent: [] for agent in agents}
    total = 0
    for entry in trace:
        for agent in entry.get("chosen", []):
            counts[agent] += 1
            total += 1
        for agent in agents:
            shares[agent].append(counts[agent] / total if total else 0.0)
    figure, axes = pyplot.subplots(figsize=(6.0, 3.5))
    for agent in agents:
        axes.plot(range(1, len(shares[agent]) + 1), shares[agent], label=agent)
    axes.set_xlabel("task")
    axes.set_ylabel("cumulative share of runs")
    axes.set_ylim(0, 1)
    axes.set_title("LinUCB choices per agent")
    if agents:
        axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return path
