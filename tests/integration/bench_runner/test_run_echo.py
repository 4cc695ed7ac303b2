"""`bench run` end to end on the real fabric (embedded broker, three echo agents, router) with 5 GSM8K items."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from bench.runner.cli import run_command

FIXTURE = Path(__file__).parent / "fixtures" / "gsm8k_5.jsonl"


def invoke(out: Path, *extra: str) -> str:
    arguments = ["--backend", "echo", "--data-file", f"gsm8k={FIXTURE}", "--data-dir", str(out / "no-cache"),
                 "--cold-start", "1", "--pretrain", "1", "--cot-count", "1", "--cot-count", "3",
                 "--out", str(out), "--deadline", "20", *extra]  # fmt: skip
    result = CliRunner().invoke(run_command, arguments, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_echo_run_writes_every_output_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    report = tmp_path / "RESULTS.md"
    output = invoke(out, "--results-md", str(report), "--title", "echo smoke")
    assert "10 runs" in output
    for name in ("accuracy_summary.csv", "accuracy.png", "agent_choices.png", "run.json", "linucb_trace.jsonl"):
        assert (out / name).stat().st_size > 0, name
    records = {phase: lines(out / f"results_{phase}.jsonl") for phase in ("cold-start", "pretrain", "test")}
    assert [len(r) for r in records.values()] == [2, 2, 6]
    first = records["test"][0]
    assert set(first) >= {"item_id", "benchmark", "difficulty", "gold", "answer", "correct", "agents", "latency_s"}
    assert not any(r["correct"] for rs in records.values() for r in rs)  # echo answers a digest, never the number
    assert all(len(r["agents"]) == 1 for r in records["test"] if r["variant"] == "single")
    for vote in (r for r in records["test"] if r["variant"] == "vote3"):
        # distinct agents; the vote may stop once two agree (the third could not change the winner)
        assert 2 <= len(vote["agents"]) == len(set(vote["agents"])) <= 3
    trace = lines(out / "linucb_trace.jsonl")
    assert len(trace) == 10 and all(entry["candidates"] and entry["rewards"] for entry in trace)
    assert "echo smoke" in report.read_text() and "Do not edit by hand" in report.read_text()
    info = json.loads((out / "run.json").read_text())
    assert info["phases"]["test"] == [r["item_id"] for r in records["test"] if r["variant"] == "single"]

    # Resume: nothing left to do, nothing counted twice.
    assert "0 runs" in invoke(out)
    # Lose the last progress entry (a crash after the record was written): only that run is redone.
    progress = out / "progress.jsonl"
    progress.write_text("".join(progress.read_text().splitlines(keepends=True)[:-1]))
    assert "1 runs" in invoke(out)
    summary = (out / "accuracy_summary.csv").read_text().splitlines()
    assert "test,vote3,gsm8k,all,3,0," in "\n".join(summary)
    assert len(json.loads((out / "run.json").read_text())["invocations"]) == 3


def test_frozen_test_phase_leaves_the_learned_state_alone(tmp_path: Path) -> None:
    out = tmp_path / "run"
    invoke(out, "--test", "0")
    state = out / "linucb_state.json"
    learned = state.read_text()
    assert json.loads(learned)["policy"]
    # The run's client account is its router's teacher: its benchmark labels key the priors (docs/tenancy.md).
    assert "gsm8k" in {row[1] for row in json.loads(learned)["priors"]["counts"]}
    CliRunner().invoke(run_command, ["--backend", "echo", "--data-file", f"gsm8k={FIXTURE}", "--cold-start", "1",
                                     "--pretrain", "1", "--test", "2", "--out", str(out)])  # fmt: skip
    assert state.read_text() == learned
    assert len(lines(out / "results_test.jsonl")) == 2
