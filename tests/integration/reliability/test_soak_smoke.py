"""bench/soak.py runs end to end and reports RSS per process (the real soak is minutes long and not in CI)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import REPO


@pytest.mark.slow
def test_soak_script_reports_rss_of_every_process(subprocess_env: dict[str, str]):
    command = [sys.executable, "-m", "bench.soak", "--minutes", "0.1", "--warm-up", "2", "--agents", "2"]
    # a few seconds say nothing about leaks, so the growth limit is not judged here
    result = subprocess.run(
        [*command, "--max-growth", "1000"], cwd=REPO, env=subprocess_env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("broker", "router", "agent-0", "agent-1"):
        assert any(line.startswith(name) and "%" not in line for line in result.stdout.splitlines()), result.stdout
    assert "lost 0" in result.stdout
