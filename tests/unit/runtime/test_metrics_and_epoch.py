"""Agent run statistics (latency EMA with beta 0.2, percentiles) and the node epoch file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent.runtime.epoch import next_epoch, write_json_atomically
from edge_agent.runtime.metrics import LATENCY_EMA_BETA, WINDOW, AgentMetrics


def test_the_first_success_sets_the_ema_then_beta_is_0_2() -> None:
    assert LATENCY_EMA_BETA == 0.2
    metrics = AgentMetrics()
    metrics.record(100.0, 10, ok=True)
    assert metrics.latency_ema_ms == 100.0
    metrics.record(200.0, 10, ok=True)
    assert metrics.latency_ema_ms == pytest.approx(0.8 * 100 + 0.2 * 200)
    metrics.record(50.0, 10, ok=True)
    assert metrics.latency_ema_ms == pytest.approx(0.8 * 120 + 0.2 * 50)
    assert (metrics.runs, metrics.errors) == (3, 0)


def test_errors_are_counted_but_do_not_move_the_latency() -> None:
    metrics = AgentMetrics()
    metrics.record(5000.0, 0, ok=False)
    assert (metrics.runs, metrics.errors, metrics.latency_ema_ms) == (1, 1, 0.0)
    assert metrics.percentile(0.5) is None
    metrics.record(40.0, 4, ok=True)
    assert metrics.latency_ema_ms == 40.0  # the first success still seeds the average
    metrics.record(9999.0, 0, ok=False)
    assert metrics.latency_ema_ms == 40.0
    assert metrics.percentile(0.95) == 40.0
    assert (metrics.runs, metrics.errors) == (3, 2)


def test_tokens_per_second_of_the_last_successful_run() -> None:
    metrics = AgentMetrics()
    assert metrics.tokens_per_second is None
    metrics.record(500.0, 50, ok=True)
    assert metrics.tokens_per_second == pytest.approx(100.0)
    metrics.record(0.0, 50, ok=True)  # a zero latency cannot give a rate; the last one stays
    assert metrics.tokens_per_second == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("latencies", "fraction", "expected"),
    [
        ([7.0], 0.5, 7.0),
        ([7.0], 0.95, 7.0),
        ([30.0, 10.0, 20.0], 0.5, 20.0),
        ([float(value) for value in range(1, 101)], 0.5, 50.0),
        ([float(value) for value in range(1, 101)], 0.95, 95.0),
        ([float(value) for value in range(100, 0, -1)], 0.95, 95.0),
        ([float(value) for value in range(1, 21)], 0.95, 19.0),  # p95 of 20 samples is not the maximum
        ([float(value) for value in range(1, 21)], 1.0, 20.0),
        ([float(value) for value in range(1, 21)], 0.0, 1.0),
        ([1.0, 2.0], 0.5, 1.0),
    ],
)
def test_percentiles_use_the_nearest_rank(latencies: list[float], fraction: float, expected: float) -> None:
    metrics = AgentMetrics()
    for latency in latencies:
        metrics.record(latency, 1, ok=True)
    assert metrics.percentile(fraction) == expected


def test_percentiles_cover_a_sliding_window() -> None:
    metrics = AgentMetrics()
    for _ in range(WINDOW):
        metrics.record(1000.0, 1, ok=True)
    for _ in range(WINDOW):
        metrics.record(10.0, 1, ok=True)
    assert metrics.percentile(0.95) == 10.0  # the slow runs have left the window
    assert metrics.runs == 2 * WINDOW


def test_epoch_increases_at_every_start(tmp_path: Path) -> None:
    epochs = [next_epoch(tmp_path, "node-1") for _ in range(5)]
    assert epochs == sorted(set(epochs))
    assert epochs[0] >= 1
    other = next_epoch(tmp_path, "node-2")
    assert other >= 1
    assert next_epoch(tmp_path, "node-1") > epochs[-1]  # the other node's file did not interfere


def test_epoch_follows_a_persisted_value_ahead_of_the_clock(tmp_path: Path) -> None:
    far_future = 10**15
    (tmp_path / "n.epoch.json").write_text(json.dumps({"node_id": "n", "epoch": far_future}))
    assert next_epoch(tmp_path, "n") == far_future + 1
    assert next_epoch(tmp_path, "n") == far_future + 2


def test_epoch_creates_the_state_dir(tmp_path: Path) -> None:
    state_dir = tmp_path / "deep" / "state"
    assert next_epoch(state_dir, "n") >= 1
    assert json.loads((state_dir / "n.epoch.json").read_text())["node_id"] == "n"


@pytest.mark.parametrize(
    "content",
    [b"{half", b"[1, 2]", b'"text"', b'{"epoch": "nine"}', b'{"epoch": -5}', b"\xff\xfe\x00garbage", b""],
)
def test_epoch_survives_a_corrupt_state_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "n.epoch.json"
    path.write_bytes(content)
    first = next_epoch(tmp_path, "n")
    assert first >= 1
    assert json.loads(path.read_text())["epoch"] == first  # the file is repaired
    assert next_epoch(tmp_path, "n") > first


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    write_json_atomically(tmp_path / "x.json", {"a": 1})
    write_json_atomically(tmp_path / "x.json", {"a": 2})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 2}
    assert [path.name for path in tmp_path.iterdir()] == ["x.json"]
