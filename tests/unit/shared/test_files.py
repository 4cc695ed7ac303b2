"""shared.files: the one atomic writer and the corrupt-file helper (issue 19 item 11)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from shared.files import atomic_file, set_aside, write_atomic


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


def test_write_atomic_creates_and_replaces_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.json"
    write_atomic(path, b"one")
    write_atomic(path, b"two")
    assert path.read_bytes() == b"two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert leftovers(path.parent) == []


def test_two_writers_at_once_never_share_a_temporary_file(tmp_path: Path) -> None:
    """A fixed `.tmp` name let two savers write into one file; each write must land whole."""
    path = tmp_path / "state.json"
    payloads = [bytes([65 + n]) * 200_000 for n in range(8)]
    errors: list[BaseException] = []

    def write(data: bytes) -> None:
        try:
            for _ in range(20):
                write_atomic(path, data)
        except BaseException as error:  # reported below: a thread's exception would vanish otherwise
            errors.append(error)

    threads = [threading.Thread(target=write, args=(data,)) for data in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert path.read_bytes() in payloads
    assert leftovers(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"old")

    def refuse(temporary: Path) -> None:
        assert temporary.read_bytes() == b"new, complete"  # checked whole, before it could appear as `path`
        raise ValueError("checksum mismatch")

    with pytest.raises(ValueError, match="checksum"), atomic_file(path, before_rename=refuse) as stream:
        stream.write(b"new, complete")
    assert path.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_exclusive_never_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "router-id"
    write_atomic(path, b"first\n", exclusive=True, mode=0o644)
    with pytest.raises(FileExistsError):
        write_atomic(path, b"second\n", exclusive=True)
    assert path.read_bytes() == b"first\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert leftovers(tmp_path) == []


def test_set_aside_keeps_every_corrupt_file_under_a_dated_name(tmp_path: Path) -> None:
    path = tmp_path / "r1.linucb.json"
    path.write_bytes(b"")
    first = set_aside(path, now=0.0)
    path.write_bytes(b"{")
    second = set_aside(path, now=0.0)
    assert first.name == "r1.linucb.json.corrupt-19700101T000000Z"
    assert second.name == "r1.linucb.json.corrupt-19700101T000000Z-1"
    assert not path.exists() and second.read_bytes() == b"{"


def test_every_hand_written_temporary_file_writer_is_gone() -> None:
    """One helper serves every writer of the product: no module but shared/files.py opens its own temporary file."""
    root = Path(__file__).resolve().parents[3]
    rooms = [
        "shared",
        "broker",
        "router",
        "edge_agent",
        "provisioning",
        "model_store",
        "fleet_observe",
        "fleet_gateway",
    ]
    offenders = []
    for room in rooms:
        for source in (root / room).rglob("*.py"):
            text = source.read_text()
            if source.name != "files.py" and ("mkstemp(" in text or "NamedTemporaryFile(" in text or '.tmp"' in text):
                offenders.append(str(source.relative_to(root)))
    assert offenders == []
    assert os.path.exists(root / "shared" / "files.py")
