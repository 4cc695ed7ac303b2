"""`edge-agent top` as a user runs it: redraws with an ANSI clear and shows a task run meanwhile."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from support import REPO

CLEAR = "\x1b[H\x1b[2J"


def test_top_redraws_and_lists_a_task_that_ran_meanwhile(fleet: Any) -> None:
    fleet.agent("board-a")
    fleet.router()
    command = [sys.executable, "-m", "edge_agent.cli", "top", "-b", fleet.broker.url, "--fabric", fleet.fabric]
    top = subprocess.Popen(
        [*command, "--iterations", "480", "--interval", "0.25", "--clear"],  # terminated once the task is seen
        env=fleet.env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert top.stdout is not None
    try:
        first = top.stdout.readline()  # the first redraw: top is subscribed to the task events by now
        assert first.startswith(CLEAR + "edge-agent top: fabric")
        submitted = fleet.cli(
            "submit",
            "What is 6 * 7?",
            "-b",
            fleet.broker.url,
            "--fabric",
            fleet.fabric,
            "--task-id",
            "top-task-1",
            "--no-trace",
            "--cot-count",
            "1",
        )
        assert submitted.returncode == 0, submitted.stderr
        seen = ""
        deadline = time.monotonic() + 60
        while "top-task-1" not in seen and time.monotonic() < deadline:
            line = top.stdout.readline()
            if not line:
                break
            seen = line if line.startswith(CLEAR) else seen + line
            if line.startswith("top-task-1") and "answered" in line:
                break
    finally:
        top.terminate()
        top.wait(15)
    task_line = next(line for line in seen.splitlines() if line.startswith("top-task-1"))
    assert task_line.split()[1] == "answered"
    assert task_line.split()[3] == "ms"
    assert any(line.startswith("board-a ") and "board-a-math" in line for line in seen.splitlines())
