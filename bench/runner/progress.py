"""Resume: a JSONL log of finished (phase, variant, item id), appended after each item's record is written.

A run that stops (Ctrl-C, a crash, the time budget) and is started again with the same output folder skips
what the log names. A record written just before a crash but not logged is run again; readers keep the last
record per key (`latest_records`), so the outputs never count an item twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ProgressKey = tuple[str, str, str]


class ProgressLog:
    """Finished items of a run, loaded from and appended to `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._done: set[ProgressKey] = set()
        if path.exists():
            for line in path.read_text().splitlines():
                entry = _parse(line)
                if entry is not None:
                    self._done.add(entry)

    def is_done(self, phase: str, variant: str, item_id: str) -> bool:
        return (phase, variant, item_id) in self._done

    def done_count(self, phase: str | None = None) -> int:
        return sum(1 for key in self._done if phase is None or key[0] == phase)

    def mark(self, phase: str, variant: str, item_id: str) -> None:
        key = (phase, variant, item_id)
        if key in self._done:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps({"phase": phase, "variant": variant, "item_id": item_id}) + "\n")
        self._done.add(key)

    @property
    def started(self) -> bool:
        return bool(self._done)


def _parse(line: str) -> ProgressKey | None:
    """One log line as a key; a torn last line (the run died mid-write) is skipped."""
    try:
        data = json.loads(line)
        return str(data["phase"]), str(data["variant"]), str(data["item_id"])
    except (json.JSONDecodeError, KeyError, TypeError):
        return None


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file, skipping a torn last line; [] when the file does not exist."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def latest_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per (phase, variant, item id): the last one written, in first-seen order."""
    latest: dict[ProgressKey, dict[str, Any]] = {}
    for record in records:
        latest[(record["phase"], record["variant"], record["item_id"])] = record
    return list(latest.values())
