"""`edge-agent bench exp1|exp2|exp3` with small runs, as a user calls them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_agent.cli.main import cli


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.parametrize(
    ("experiment", "summary_rows", "extra_files"),
    [
        ("exp1", 7, ["trajectories.csv"]),
        ("exp2", 16, ["per_seed.csv", "trajectories.csv", "recovery_curves.png"]),
        ("exp3", 24, ["trajectories.csv", "system_metrics.png"]),
    ],
)
def test_experiment_writes_its_files_and_prints_a_table(
    tmp_path: Path, experiment: str, summary_rows: int, extra_files: list[str]
) -> None:
    out = tmp_path / experiment
    result = CliRunner().invoke(cli, ["bench", experiment, "--seeds", "1", "--tasks", "260", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "policy" in result.stdout and str(out / "summary.csv") in result.stdout
    assert len(rows(out / "summary.csv")) == summary_rows
    for name in extra_files:
        assert (out / name).stat().st_size > 0
    assert len(rows(out / "trajectories.csv")) == summary_rows * 260


def test_json_output_lists_the_summary_and_files(tmp_path: Path) -> None:
    args = ["bench", "exp1", "--seeds", "2", "--tasks", "100", "--out", str(tmp_path), "--drift", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["config"]["drift"] is True and payload["config"]["seeds"] == 2
    assert [row["policy"] for row in payload["summary"]] == [
        "always_A",
        "static_rule",
        "random",
        "random_topL",
        "seed_linucb",
        "linucb",
        "cost_aware",
    ]
    assert payload["summary"][0]["published_success_rate"] is None  # 100 tasks is not the published setup
    assert str(tmp_path / "summary.csv") in payload["files"]


def test_a_bad_value_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["bench", "exp1", "--seeds", "0", "--out", str(tmp_path)])
    assert result.exit_code == 2
