"""Same seed, same numbers; another seed, other numbers; no dependence on Python's salted hash()."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.experiments import exp1
from bench.experiments.episode import EpisodeSettings, policy_key, run_episode
from bench.experiments.policies import make_policy

CONFIG = exp1.Exp1Config(seeds=2, n_tasks=200)


def test_the_same_seed_gives_an_identical_summary(tmp_path: Path) -> None:
    first = exp1.run(CONFIG, tmp_path / "first")
    second = exp1.run(CONFIG, tmp_path / "second")
    assert first.summary == second.summary
    for name in ("summary.csv", "trajectories.csv"):
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes()


def test_different_seeds_give_different_trajectories() -> None:
    settings = EpisodeSettings(n_tasks=200)
    one = run_episode(make_policy("linucb"), 1, settings)
    two = run_episode(make_policy("linucb"), 2, settings)
    assert one.steps != two.steps


def test_policies_see_the_same_tasks_for_a_seed() -> None:
    settings = EpisodeSettings(n_tasks=200)
    tasks = [[step.hard for step in run_episode(make_policy(name), 5, settings).steps] for name in ("random", "linucb")]
    assert tasks[0] == tasks[1]


def test_policy_streams_do_not_depend_on_the_hash_seed() -> None:
    assert policy_key("random") == 373021397  # zlib.crc32(b"random")
    code = "from bench.experiments.episode import *; from bench.experiments.policies import make_policy; " + (
        "print(sum(s.agent == 'A' for s in run_episode(make_policy('random'), 9, EpisodeSettings(n_tasks=100)).steps))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in ("1", "2")
    }
    assert len(outputs) == 1
