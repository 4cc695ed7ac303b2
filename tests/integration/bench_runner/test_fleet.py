"""`edge-agent bench fleet`, short form: a broker, four scripted agent processes and a router process on loopback.

The agents are scripted with known skill, so the run checks what the fleet benchmark reports: the router's
single choice, a 3-way vote, the self-consistency baseline (the best agent by configured skill sampled 3
times and voted) beside it with a plain verdict, the best agent alone and the oracle over the same items, and
Exp2 (the best agent SIGKILLed mid-stream) with the fabric still answering every task afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.fleet.report import baseline_verdict

FIXTURES = Path(__file__).parent / "fixtures"


def test_the_fleet_benchmark_runs_over_real_processes_and_writes_its_report(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    command = [sys.executable, "-m", "edge_agent.cli", "bench", "fleet", "--items", "6", "--exp2-items", "6"]
    command += [
        "--item-file",
        f"gsm8k={FIXTURES / 'gsm8k_5.jsonl'}",
        "--item-file",
        f"medqa={FIXTURES / 'medqa_4.jsonl'}",
    ]
    command += ["--out", str(tmp_path / "run"), "--results-md", str(results), "--json"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert finished.returncode == 0, finished.stderr[-3000:]
    summary = json.loads(finished.stdout)

    strategies = summary["strategies"]
    assert len(strategies) == 6
    oracle = next(v for k, v in strategies.items() if k.startswith("oracle"))
    best = next(v for k, v in strategies.items() if k.startswith("best agent alone"))
    assert oracle["accuracy"] >= best["accuracy"]
    assert all(0.0 <= v["accuracy"] <= 1.0 for v in strategies.values())
    assert set(summary["agents_alone"]) == {"math-board", "med-board", "logic-board", "generalist"}
    records = (tmp_path / "run" / "records_single.jsonl").read_text().splitlines()
    assert len(records) == 6 and all(json.loads(line)["agents"] for line in records)  # every task was answered

    baseline = summary["self_consistency"]
    sampled = baseline["agent"]
    assert sampled == max(baseline["expected_accuracy"], key=lambda agent: baseline["expected_accuracy"][agent])
    row = strategies[f"self-consistency: {sampled} x3, voted"]
    sc_records = [json.loads(line) for line in (tmp_path / "run" / "records_sc.jsonl").read_text().splitlines()]
    assert len(sc_records) == 6
    assert all(record["dispatched"] == [sampled] * 3 for record in sc_records)  # one agent, sampled 3 times
    assert all(set(record["agents"]) == {sampled} and len(record["agents"]) >= 2 for record in sc_records)
    assert row["accuracy"] == baseline["baseline_accuracy"] == sum(r["correct"] for r in sc_records) / 6
    vote = next(v for k, v in strategies.items() if k.startswith("router, 3-way vote"))
    assert baseline["fleet_accuracy"] == vote["accuracy"]
    assert baseline["margin"] == pytest.approx(vote["accuracy"] - row["accuracy"])
    assert baseline["fleet_beats_baseline"] is (baseline["margin"] > 0)
    assert all(2.0 <= ballots <= 3.0 for ballots in baseline["runs_per_task"].values())  # 3 runs, early stop

    exp2 = summary["exp2"]
    assert exp2["killed"] == max(summary["agents_alone"], key=lambda a: summary["agents_alone"][a]["accuracy"])
    after = [json.loads(line) for line in (tmp_path / "run" / "records_exp2.jsonl").read_text().splitlines()][3:]
    assert all(exp2["killed"] not in record["agents"] for record in after)  # a dead agent casts no ballot

    text = results.read_text()
    assert "These agents are scripted" in text
    assert baseline_verdict(baseline) in text  # the report says plainly whether the fleet beats the baseline
    assert f"| self-consistency: {sampled} x3, voted |" in text
    for name in ("fleet_accuracy", "fleet_routing_share", "fleet_recovery", "fleet_task_share"):
        assert (tmp_path / "figures" / "fleet" / f"{name}.png").stat().st_size > 0
        assert f"(figures/fleet/{name}.png)" in text
