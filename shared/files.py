"""Files written whole or not at all, and files that cannot be read set aside: one home for both.

Every state file, rendered config, identity file and download of the kit goes through `write_atomic` (bytes in
memory) or `atomic_file` (a stream, for files too large to hold): a unique temporary file in the same folder,
flushed to disk (fsync), renamed over the target, and the folder synced, so a reader, a crash or a second writer
never sees half a file, and two writers never share a temporary name. (pip's `adjacent_tmp_file` + `replace`.)

A reader that finds a file it cannot parse calls `set_aside`: the file is renamed `<name>.corrupt-<timestamp>`
(kept for the operator, never overwritten by the next save) and the caller starts fresh.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

PRIVATE_MODE = 0o600
"""The default mode of a written file: state and configs may hold secrets (passwords, keys, learned state)."""


def write_atomic(path: Path, data: bytes, *, mode: int = PRIVATE_MODE, exclusive: bool = False) -> None:
    """Write `data` to `path` atomically (unique temporary file in the same folder, fsync, rename).

    `exclusive` links the file into place instead of renaming it, so an existing `path` is never replaced:
    FileExistsError tells the caller that another writer won (two routers creating one id file at once).
    """
    with atomic_file(path, mode=mode, exclusive=exclusive) as stream:
        stream.write(data)


@contextlib.contextmanager
def atomic_file(
    path: Path,
    *,
    mode: int = PRIVATE_MODE,
    exclusive: bool = False,
    before_rename: Callable[[Path], None] | None = None,
) -> Iterator[BinaryIO]:
    """A binary stream whose content replaces `path` when the block ends without an error (else nothing changes).

    `before_rename(temporary_path)` may check the complete file (a checksum, a format's magic bytes) and raise
    to keep it from ever appearing under `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        if before_rename is not None:
            before_rename(temporary)
        if exclusive:
            os.link(temporary, path)  # never replaces: raises FileExistsError when `path` is there
        else:
            os.replace(temporary, path)
        _sync_folder(path.parent)
    finally:
        temporary.unlink(missing_ok=True)  # gone after a rename; after an error or a link, removed here


def set_aside(path: Path, now: float | None = None) -> Path:
    """Rename an unreadable file to `<name>.corrupt-<UTC timestamp>` beside it; returns the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    kept = path.with_name(f"{path.name}.corrupt-{stamp}")
    suffix = 1
    while kept.exists():  # two corrupt files in one second: keep both
        kept = path.with_name(f"{path.name}.corrupt-{stamp}-{suffix}")
        suffix += 1
    os.replace(path, kept)
    return kept


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (the folder's entry), where the platform lets a folder be opened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows, or a folder we may not open: the rename is still atomic, only less durable
        return
    try:
        os.fsync(descriptor)
    except OSError:  # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(descriptor)
