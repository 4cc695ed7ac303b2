"""The model files a node holds, by content: sha256 and size, computed once per file and remembered.

A node announces what it holds in its beacon (`ModelRef`s) and serves exactly those files to peers, by sha256
only (never by a path a peer names). Hashing a model takes seconds, so each file's digest is cached in
`<models dir>/.index.json` against its size and modification time; a changed file is hashed again.

Kit wheels (`*.whl`) are held, served and fetched the same way, beside the models.

Fetched models are stored as `<safe name>-<sha256[:12]><suffix>` in the models directory: the name a person
gave is kept for `edge-agent models list`, the digest makes two different files of one name distinct.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from shared.files import write_atomic
from shared.messages import ModelRef

INDEX_FILE = ".index.json"
HASH_CHUNK_BYTES = 1 << 20
MODEL_SUFFIXES = (".gguf",)
HELD_SUFFIXES = (*MODEL_SUFFIXES, ".whl")  # kit wheels travel like models (docs/fleet-operations.md)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def stored_name(reference: ModelRef) -> str:
    """The file name a fetched model gets: a safe form of its name, its digest's head, its suffix."""
    base = Path(reference.name).name
    suffix = Path(base).suffix if Path(base).suffix in HELD_SUFFIXES else ".gguf"
    stem = _UNSAFE.sub("_", Path(base).stem).lstrip(".")[:64] or "model"
    return f"{stem}-{reference.sha256[:12]}{suffix}"


@dataclass(frozen=True)
class HeldModel:
    """A model file on this node and its content reference."""

    path: Path
    reference: ModelRef


class ModelHoldings:
    """The models of one directory (plus extra files, e.g. the bundled SmolLM2), indexed by sha256."""

    def __init__(self, directory: Path, extra_files: tuple[Path, ...] = ()) -> None:
        self.directory = directory
        self.extra_files = extra_files
        self._by_sha: dict[str, HeldModel] = {}
        self._cache: dict[str, dict[str, object]] = self._read_cache()

    def refresh(self) -> list[HeldModel]:
        """Look at the directory again (hashing new or changed files); returns what is held."""
        files = list(self.extra_files)
        if self.directory.is_dir():
            files += [p for p in sorted(self.directory.iterdir()) if p.is_file() and p.suffix in HELD_SUFFIXES]
        found: dict[str, HeldModel] = {}
        for path in files:
            held = self._describe(path)
            if held is not None:
                found.setdefault(held.reference.sha256, held)
        self._by_sha = found
        self._save_cache()
        return list(found.values())

    def add(self, path: Path, reference: ModelRef) -> HeldModel:
        """A file just fetched and checked: hold it without hashing it again."""
        stat = path.stat()
        self._cache[str(path)] = {"size": stat.st_size, "mtime": stat.st_mtime_ns, "sha256": reference.sha256}
        held = HeldModel(path, ModelRef(name=path.name, sha256=reference.sha256, size_bytes=stat.st_size))
        self._by_sha[reference.sha256] = held
        self._save_cache()
        return held

    def find(self, sha256: str) -> HeldModel | None:
        return self._by_sha.get(sha256)

    def references(self) -> tuple[ModelRef, ...]:
        return tuple(held.reference for held in self._by_sha.values())

    def _describe(self, path: Path) -> HeldModel | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        cached = self._cache.get(str(path))
        if cached and cached.get("size") == stat.st_size and cached.get("mtime") == stat.st_mtime_ns:
            digest = str(cached["sha256"])
        else:
            try:
                digest = sha256_file(path)
            except OSError:
                return None
            self._cache[str(path)] = {"size": stat.st_size, "mtime": stat.st_mtime_ns, "sha256": digest}
        if stat.st_size < 1:
            return None
        return HeldModel(path, ModelRef(name=path.name, sha256=digest, size_bytes=stat.st_size))

    def _read_cache(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads((self.directory / INDEX_FILE).read_text())
        except (OSError, ValueError):
            return {}  # no cache, or a corrupt one: hash again
        return data if isinstance(data, dict) else {}

    def _save_cache(self) -> None:
        with contextlib.suppress(OSError):  # a read-only models directory still serves; it just hashes again
            write_atomic(self.directory / INDEX_FILE, json.dumps(self._cache, sort_keys=True).encode())
