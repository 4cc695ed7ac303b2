"""Exp1, efficiency and cost: which agent each policy routes 1000 simple/hard tasks to, and at what price.

The seed published one run (seed 123 of Python's `random`, p_hard 0.2 which drew 22.3 % hard tasks, Top-3,
no fallback); PUBLISHED holds its table. We run `seeds` numpy seeds with p_hard 0.223 so the expected share of
hard tasks matches that run, and report mean and standard deviation over seeds next to the published values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from bench.experiments.config import ExperimentConfig
from bench.experiments.episode import Episode, run_episode
from bench.experiments.metrics import mean_std
from bench.experiments.output import ExperimentResult, Progress, Row, plus_minus, write_csv
from bench.experiments.policies import POLICY_NAMES, make_policy

PUBLISHED: dict[str, tuple[float, float]] = {
    # policy here: (success rate, total cost) in the seed's table (its "random" is our random_topL,
    # its "linucb" our seed_linucb)
    "always_A": (0.949, 1000.0),
    "static_rule": (0.867, 301.0),
    "random_topL": (0.879, 502.0),
    "seed_linucb": (0.888, 447.0),
}


class Exp1Config(ExperimentConfig):
    policies: tuple[str, ...] = tuple(name for name in POLICY_NAMES if name != "cost_aware_nobudget")

    @property
    def episode_count(self) -> int:
        return self.seeds * len(self.policies)

    @property
    def matches_published_setup(self) -> bool:
        return self.n_tasks == 1000 and self.top_l == 3 and not self.fallback and not self.drift


RESULTS_NOTES = (
    "The seed published one run (seed 123, 22.3 % hard tasks); the published columns are its table (its "
    '"random" is random_topL here, its "linucb" is seed_linucb). Issue 13\'s target for `cost_aware` '
    "(router/cost_policy.py): at least the seed LinUCB's success over the same seeds (0.871) at no more than 80 % "
    "of its cost (463 -> 370). cost_aware paces its spending to 0.37 per task (that 80 %) with a dual price; "
    "`cost_aware` reaches 0.876 at 335 (72 %). Its success estimates start from the agents' announced match "
    "scores (PILOT's warm start) and it pays a price per unit of cost and of latency (MixLLM)."
)

COLUMNS = [
    ("policy", "policy"),
    ("success", "success (mean ± std)"),
    ("cost", "total cost (mean ± std)"),
    ("latency_mean_ms", "latency ms"),
    ("reward_mean", "reward"),
    ("published_success_rate", "published success"),
    ("published_total_cost", "published cost"),
]


def run(config: Exp1Config, out_dir: Path, progress: Progress | None = None) -> ExperimentResult:
    """Run every policy on every seed; write summary.csv and trajectories.csv into `out_dir`."""
    settings = config.settings()
    episodes: list[Episode] = []
    for name in config.policies:
        for seed in config.seed_list():
            episodes.append(run_episode(make_policy(name), seed, settings))
            if progress:
                progress(1)
    from bench.experiments.plotting import plot_cost_success

    summary = [summarize(name, [e for e in episodes if e.policy == name], config) for name in config.policies]
    files = [
        write_csv(out_dir / "summary.csv", summary),
        write_csv(out_dir / "trajectories.csv", trajectory_rows(episodes)),
        plot_cost_success(summary, out_dir / "cost_success.png"),
    ]
    table = [{**row, "success": _pm(row, "success_rate"), "cost": _pm(row, "total_cost")} for row in summary]
    return ExperimentResult("exp1", table, files, COLUMNS)


def summarize(policy: str, episodes: Sequence[Episode], config: Exp1Config) -> Row:
    """One summary row: success, cost, latency and reward over the seeds, and the published values."""
    success = mean_std([sum(s.success for s in e.steps) / len(e.steps) for e in episodes])
    cost = mean_std([sum(s.cost for s in e.steps) for e in episodes])
    published = PUBLISHED.get(policy) if config.matches_published_setup else None
    row: Row = {
        "policy": policy,
        "seeds": len(episodes),
        "success_rate_mean": success[0],
        "success_rate_std": success[1],
        "total_cost_mean": cost[0],
        "total_cost_std": cost[1],
        "latency_mean_ms": mean_std([sum(s.latency_ms for s in e.steps) / len(e.steps) for e in episodes])[0],
        "reward_mean": mean_std([sum(s.reward for s in e.steps) / len(e.steps) for e in episodes])[0],
        "fallback_rate": mean_std([sum(s.fallback for s in e.steps) / len(e.steps) for e in episodes])[0],
        "hard_share": mean_std([sum(s.hard for s in e.steps) / len(e.steps) for e in episodes])[0],
    }
    for agent in episodes[0].calls:
        row[f"calls_{agent}"] = mean_std([e.calls[agent] for e in episodes])[0]
    row["published_success_rate"] = published[0] if published else None
    row["published_total_cost"] = published[1] if published else None
    return row


def trajectory_rows(episodes: Sequence[Episode], **extra: object) -> list[Row]:
    """One row per step of every episode (policy, seed, then the step's fields)."""
    return [{**extra, "policy": e.policy, "seed": e.seed, **asdict(step)} for e in episodes for step in e.steps]


def _pm(row: Row, key: str) -> str:
    return plus_minus(row[f"{key}_mean"], row[f"{key}_std"])
