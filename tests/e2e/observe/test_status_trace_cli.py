"""`edge-agent status` and `edge-agent trace` as a user runs them, against mosquitto and echo agents.

`fleet` is the `Fleet` of this directory's conftest (conftest modules are not importable for annotations).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from support import REPO

from broker.policy import free_port


def test_status_shows_one_row_per_agent_and_the_router(fleet: Any) -> None:
    fleet.agent("board-a")
    fleet.agent("board-b", preset="coder")
    fleet.router()
    result = fleet.cli("status", "-b", fleet.broker.url, "--fabric", fleet.fabric)
    assert result.returncode == 0, result.stderr
    rows = {
        line.split()[0]: line.split() for line in result.stdout.splitlines() if line.startswith(("board", "router"))
    }
    assert rows["board-a"][:3] == ["board-a", "board-a-math", "echo"]
    assert rows["board-b"][:3] == ["board-b", "board-b-coder", "echo"]
    assert "online" in rows["board-a"] and "online" in rows["board-b"]
    assert rows["router-1"][2] == "online"
    assert "nodes: 2 online, 0 offline; agents: 2" in result.stdout


def test_status_json_parses_and_reports_an_offline_node(fleet: Any) -> None:
    fleet.agent("board-a")
    fleet.agent("board-b")
    board_b, _ = fleet.processes[1]
    board_b.terminate()
    board_b.wait(15)
    result = fleet.cli("status", "-b", fleet.broker.url, "--fabric", fleet.fabric, "--json", "--wait", "0.5")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["fabric"] == fleet.fabric
    status = {agent["agent_id"]: agent["status"] for agent in data["agents"]}
    assert status == {"board-a-math": "online", "board-b-math": "offline"}
    assert {agent["backend"] for agent in data["agents"]} == {"echo"}


def test_status_fails_clearly_when_no_broker_listens() -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "edge_agent.cli", "status", "-b", url, "--connect-timeout", "1"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"no broker answered within 1 s (tried {url})" in result.stderr


def test_trace_prints_each_event_of_a_submitted_task_until_the_answer(fleet: Any) -> None:
    fleet.agent("board-a")
    fleet.agent("board-b")
    fleet.router()
    trace_command = [sys.executable, "-m", "edge_agent.cli", "trace", "task-42", "-b", fleet.broker.url]
    trace = subprocess.Popen(
        [*trace_command, "--fabric", fleet.fabric, "--timeout", "60"],
        env=fleet.env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert trace.stdout is not None
    assert "following task task-42" in trace.stdout.readline()  # printed before subscribing...
    time.sleep(1.0)  # ...so give the subscription a moment; the router publishes events at QoS 0, not retained
    submitted = fleet.cli(
        "submit",
        "What is 17 * 3?",
        "-b",
        fleet.broker.url,
        "--fabric",
        fleet.fabric,
        "--task-id",
        "task-42",
        "--no-trace",
        "--cot-count",
        "2",
    )
    assert submitted.returncode == 0, submitted.stderr
    output, errors = trace.communicate(timeout=60)
    assert trace.returncode == 0, errors
    events = [line.split()[1] for line in output.splitlines() if line.lstrip().startswith("+")]
    assert events[0] == "received" and events[-1] == "answered"
    assert {"planned", "screened", "dispatched", "result", "voted", "rewarded"} <= set(events)
    screened = next(line for line in output.splitlines() if " screened " in line)
    assert "score=" in screened and "ucb=" in screened
    assert events.count("result") == 2
