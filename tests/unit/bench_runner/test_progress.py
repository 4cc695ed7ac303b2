"""Resume: the progress log and the last-record-wins reading of the outputs."""

from __future__ import annotations

from pathlib import Path

from bench.runner.progress import ProgressLog, append_jsonl, latest_records, read_jsonl


def test_progress_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    log = ProgressLog(path)
    assert not log.started
    log.mark("pretrain", "single", "item-1")
    log.mark("pretrain", "single", "item-1")  # marking twice writes once
    log.mark("test", "vote3", "item-2")
    reopened = ProgressLog(path)
    assert reopened.started
    assert reopened.is_done("pretrain", "single", "item-1")
    assert not reopened.is_done("pretrain", "vote3", "item-1")  # another variant of the same item
    assert not reopened.is_done("test", "single", "item-1")  # the same item in another phase
    assert reopened.done_count() == 2 and reopened.done_count("test") == 1
    assert len(path.read_text().splitlines()) == 2


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    ProgressLog(path).mark("test", "single", "a")
    with path.open("a") as handle:
        handle.write('{"phase": "test", "vari')
    log = ProgressLog(path)
    assert log.is_done("test", "single", "a") and log.done_count() == 1


def test_outputs_keep_the_last_record_per_key(tmp_path: Path) -> None:
    path = tmp_path / "results_test.jsonl"
    append_jsonl(path, {"phase": "test", "variant": "single", "item_id": "a", "correct": False})
    append_jsonl(path, {"phase": "test", "variant": "vote3", "item_id": "a", "correct": False})
    append_jsonl(path, {"phase": "test", "variant": "single", "item_id": "a", "correct": True})  # re-run after a crash
    records = latest_records(read_jsonl(path))
    assert [(r["variant"], r["correct"]) for r in records] == [("single", True), ("vote3", False)]
    assert read_jsonl(tmp_path / "missing.jsonl") == []
