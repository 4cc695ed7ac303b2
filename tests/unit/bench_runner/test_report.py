"""RESULTS.md rendering and the accuracy summary, from a run folder written by hand here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.runner.outputs import summarise, wilson_interval
from bench.runner.progress import append_jsonl
from bench.runner.report import render_report


def record(variant: str, item: str, correct: bool, difficulty: str = "easy") -> dict[str, object]:
    return {"phase": "test", "variant": variant, "item_id": item, "benchmark": "gsm8k", "difficulty": difficulty,
            "correct": correct, "latency_s": 1.0, "error": None}  # fmt: skip


def test_wilson_interval() -> None:
    assert wilson_interval(0, 0) == (0.0, 0.0)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-3)
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(1 - high)


def test_summary_counts_per_variant_and_bin() -> None:
    rows = summarise([record("single", "a", True), record("single", "b", False, "hard"), record("vote3", "a", True)])
    table = {(r["variant"], r["difficulty"]): (r["items"], r["correct"]) for r in rows}
    assert table == {("single", "all"): (2, 1), ("single", "easy"): (1, 1), ("single", "hard"): (1, 0),
                     ("vote3", "all"): (1, 1), ("vote3", "easy"): (1, 1)}  # fmt: skip


def test_report_is_marked_generated_and_pairs_the_variants(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r1"
    for item, single, vote in (("a", True, True), ("b", False, True), ("c", False, False)):
        append_jsonl(run / "results_test.jsonl", record("single", item, single))
        append_jsonl(run / "results_test.jsonl", record("vote3", item, vote))
        ballots = [{"agent_id": agent, "answer": "1", "weight": 0.5} for agent in ("m", "c", "r")]
        append_jsonl(run / "linucb_trace.jsonl", {"variant": "vote3", "chosen": ["m", "c", "r"], "ballots": ballots})
    (run / "run.json").write_text(json.dumps({"config": {"title": "My run", "cot_counts": [1, 3]},
                                              "phases": {"test": ["a", "b", "c"]}}))  # fmt: skip
    (run / "accuracy.png").write_bytes(b"png")
    text = render_report([run], tmp_path / "bench")
    assert text.startswith("# Benchmark results") and "Do not edit by hand" in text
    assert "## My run" in text
    assert "| test | single vs vote3 | 3 | 1 | 0 | 1 | 1 |" in text
    assert "| test | vote3 | gsm8k | 3 | 2 | 66.7 % |" in text
    assert "| vote3 | 3 | 3.00 | 3/3 | c 3, m 3, r 3 |" in text
    # the plot is copied beside the report (runs/ is ignored by git, so a link into it would be broken)
    assert "![accuracy.png](figures/r1/accuracy.png)" in text
    assert (tmp_path / "bench" / "figures" / "r1" / "accuracy.png").read_bytes() == b"png"
    assert "test 3/3" in text


def test_rewriting_the_report_keeps_the_other_generators_sections(tmp_path: Path) -> None:
    from bench.runner.report import write_report
    from bench.sections import replace_section

    report = tmp_path / "RESULTS.md"
    replace_section(report, "fleet", "## Fleet\n\nfigures")
    replace_section(report, "fleet", "## Fleet\n\nnew figures")  # replaced in place, not appended twice
    write_report(report, [])
    text = report.read_text()
    assert text.startswith("# Benchmark results") and text.count("## Fleet") == 1 and "new figures" in text
