"""The node's epoch: a counter that grows at every start, persisted in a small state file.

Routers trust the beacon with the newest epoch, so a late offline Will of an earlier run can never mark the
current run offline (Sparkplug's birth/death sequence).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from shared.files import write_atomic


def next_epoch(state_dir: Path, node_id: str) -> int:
    """Increment and persist the epoch of `node_id`; the first start gets 1."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / f"{node_id}.epoch.json"
    previous = _read_epoch(path)
    # The wall clock (in ms) keeps epochs increasing even if the state file is lost or the node moves.
    epoch = max(previous + 1, int(time.time() * 1000))
    write_json_atomically(path, {"node_id": node_id, "epoch": epoch})
    return epoch


def _read_epoch(path: Path) -> int:
    try:
        value = json.loads(path.read_text()).get("epoch", 0)
    except (OSError, ValueError, AttributeError):
        return 0
    return value if isinstance(value, int) and value >= 0 else 0


def write_json_atomically(path: Path, data: object) -> None:
    """Write JSON to `path` atomically (shared.files.write_atomic), so readers never see half a file."""
    write_atomic(path, json.dumps(data).encode())
