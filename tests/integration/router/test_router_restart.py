"""Learning that lasts: a router restarted with no flags keeps its id and resumes its learned state.

    edge-agent start --backend echo ...      (one echo math agent)
    edge-agent router                        (no --router-id, no --state-file)   3 tasks, SIGTERM
    edge-agent start --router --backend echo (no router flags, same state dir)   1 task, SIGTERM

Real broker, real processes, real MQTT clients; the state directory is the only thing the runs share.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import RunningBroker, connection_for, stop_processes

from shared.client import FabricTaskClient, TaskFailed
from shared.config import ConnectionSettings
from shared.messages import TaskAnswer

WAIT_S = 30.0


def spawn(
    broker: RunningBroker, fabric: str, env: dict[str, str], log: Path, *arguments: str
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "edge_agent.cli", *arguments, "--broker", broker.url, "--fabric", fabric]
    return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)


def wait_for_line(log: Path, prefix: str, process: subprocess.Popen[bytes]) -> str:
    """The first line of the log that starts with `prefix` (bounded wait)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(prefix):
                return line
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"no line starting with {prefix!r} in {log.name}:\n{log.read_text(errors='replace')[-3000:]}")


def ask(connection: ConnectionSettings, count: int, prefix: str) -> list[TaskAnswer]:
    """Submit `count` tasks with a gold answer; a router that has not seen the agent yet is asked again."""

    async def one(client: FabricTaskClient, index: int) -> TaskAnswer:
        for _ in range(40):
            try:
                return await client.submit(
                    "What is 6 * 7?",
                    task_id=f"{prefix}-{index}",
                    cot_count=1,
                    gold_answer="42",
                    deadline_s=10,
                    timeout_s=15,
                )
            except TaskFailed as error:
                if error.reply.code != "no_agents":
                    raise
                await asyncio.sleep(0.25)
        raise AssertionError("the router never saw the agent")

    async def scenario() -> list[TaskAnswer]:
        async with FabricTaskClient(connection) as client:
            return [await one(client, index) for index in range(count)]

    return asyncio.run(asyncio.wait_for(scenario(), 120))


def learned_updates(state_file: Path) -> int:
    data = json.loads(state_file.read_text())
    return sum(arm["count"] for arm in data["policy"]["arms"].values())


@pytest.mark.timeout(180)
def test_a_restarted_router_keeps_its_id_and_resumes_its_learning(
    amqtt_broker: RunningBroker, fabric: str, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    state_dir = Path(subprocess_env["SYMPHONY_EDGE_STATE_DIR"])
    connection = connection_for(amqtt_broker, fabric)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        agent_args = ("start", "--backend", "echo", "--preset", "math")
        agent = spawn(amqtt_broker, fabric, subprocess_env, tmp_path / "agent.log", *agent_args, "--node-id", "n1")
        processes.append(agent)
        router_log = tmp_path / "router.log"
        router = spawn(amqtt_broker, fabric, subprocess_env, router_log, "router")
        processes.append(router)
        router_id = wait_for_line(router_log, "router ", router).split()[1]

        first = ask(connection, 3, "before")
        assert {answer.router_id for answer in first} == {router_id}
        assert all(answer.answer for answer in first)
        stop_processes([router])
        assert router.returncode == 0, router_log.read_text()
        state_file = state_dir / f"{router_id}.linucb.json"
        saved = learned_updates(state_file)
        assert saved == 3

        again_log = tmp_path / "router-again.log"
        again = spawn(amqtt_broker, fabric, subprocess_env, again_log, "router")
        processes.append(again)
        assert wait_for_line(again_log, "router ", again).split()[1] == router_id
        assert (state_dir / "router-id").read_text().strip() == router_id
        assert "learning from scratch" in wait_for_line(router_log, "learning from scratch", router)
        resumed = wait_for_line(again_log, "resumed the learned state", again)
        assert f"{state_file} ({saved} updates)" in resumed
        stop_processes([again])

        stop_processes([agent])
        hosted_log = tmp_path / "hosted.log"
        hosted = spawn(amqtt_broker, fabric, subprocess_env, hosted_log, *agent_args, "--node-id", "n2", "--router")
        processes.append(hosted)
        (answer,) = ask(connection, 1, "after")
        assert answer.router_id == router_id  # `start --router` finds the same id in the same state directory
        hosted_line = wait_for_line(hosted_log, f"router {router_id} hosted on this node", hosted)
        assert f"resumed the learned state from {state_file} ({saved} updates)" in hosted_line
        stop_processes([hosted])
        assert learned_updates(state_file) == saved + 1  # resumed, not restarted from zero
        assert json.loads(state_file.read_text())["priors"]["counts"]  # the priors are kept too
    except AssertionError:
        for log in sorted(tmp_path.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        stop_processes(processes)


@pytest.mark.parametrize("command", [("router",), ("start", "--backend", "echo", "--router")])
def test_a_broken_router_id_file_is_a_clear_error(
    amqtt_broker: RunningBroker, fabric: str, tmp_path: Path, subprocess_env: dict[str, str], command: tuple[str, ...]
) -> None:
    state_dir = Path(subprocess_env["SYMPHONY_EDGE_STATE_DIR"])
    state_dir.mkdir(parents=True)
    (state_dir / "router-id").write_text("not/a valid id\n")
    arguments = [sys.executable, "-m", "edge_agent.cli", *command, "--broker", amqtt_broker.url, "--fabric", fabric]
    completed = subprocess.run(arguments, capture_output=True, text=True, timeout=60, env=subprocess_env)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "router-id does not hold a valid router id" in completed.stderr
    assert "Traceback" not in completed.stderr
