"""The run's tables: accuracy_summary.csv from the per-phase JSONL, and the run.json bookkeeping."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.runner.config import PHASES
from bench.runner.progress import latest_records, read_jsonl

SUMMARY_COLUMNS = (
    "phase",
    "variant",
    "benchmark",
    "difficulty",
    "items",
    "correct",
    "accuracy",
    "ci95_low",
    "ci95_high",
    "errors",
    "mean_latency_s",
)


def load_results(out: Path) -> list[dict[str, Any]]:
    """Every phase's records, one per (phase, variant, item), in phase order."""
    records: list[dict[str, Any]] = []
    for phase in PHASES:
        records.extend(latest_records(read_jsonl(out / f"results_{phase}.jsonl")))
    return records


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (sensible at 0 % and with few items)."""
    if total == 0:
        return 0.0, 0.0
    share = correct / total
    denominator = 1 + z * z / total
    centre = (share + z * z / (2 * total)) / denominator
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def summarise(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accuracy per phase, variant and benchmark, over all difficulties and per difficulty bin."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for record in records:
        for difficulty in ("all", record.get("difficulty") or "unknown"):
            key = (record["phase"], record["variant"], record["benchmark"], difficulty)
            groups.setdefault(key, []).append(record)
    rows = []
    for (phase, variant, benchmark, difficulty), group in groups.items():
        correct = sum(1 for record in group if record["correct"])
        low, high = wilson_interval(correct, len(group))
        rows.append(
            {
                "phase": phase,
                "variant": variant,
                "benchmark": benchmark,
                "difficulty": difficulty,
                "items": len(group),
                "correct": correct,
                "accuracy": round(correct / len(group), 4),
                "ci95_low": round(low, 4),
                "ci95_high": round(high, 4),
                "errors": sum(1 for record in group if record.get("error")),
                "mean_latency_s": round(sum(record["latency_s"] for record in group) / len(group), 3),
            }
        )
    order = {"all": 0, "easy": 1, "medium": 2, "hard": 3}
    return sorted(
        rows, key=lambda r: (PHASES.index(r["phase"]), r["variant"], r["benchmark"], order.get(r["difficulty"], 9))
    )


def write_csv(path: Path, rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_outputs(out: Path, elapsed_s: float) -> list[Path]:
    """accuracy_summary.csv, the plots, and this invocation's elapsed time in run.json; returns the files."""
    from bench.runner.plots import write_plots

    records = load_results(out)
    files = [write_csv(out / "accuracy_summary.csv", summarise(records), SUMMARY_COLUMNS)]
    files.extend(write_plots(out, records, read_jsonl(out / "linucb_trace.jsonl")))
    _record_elapsed(out / "run.json", elapsed_s)
    files.extend(path for path in sorted(out.glob("*.jsonl")) if path.name != "progress.jsonl")
    return [*files, out / "run.json"]


def _record_elapsed(path: Path, elapsed_s: float) -> None:
    info = json.loads(path.read_text()) if path.exists() else {"invocations": [{}]}
    invocations = info.setdefault("invocations", [{}]) or [{}]
    invocations[-1]["elapsed_s"] = round(elapsed_s, 1)
    info["elapsed_s_total"] = round(sum(entry.get("elapsed_s", 0.0) for entry in invocations), 1)
    path.write_text(json.dumps(info, indent=2))
