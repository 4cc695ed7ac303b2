"""`edge-agent provision` over SSH onto two boards, each a Linux network namespace with its own sshd.

The boards share this machine's filesystem (so each gets its own prefix: the fleet's prefix names `{host}`) but
not its network: a bridge on a private /24 joins them to the control node (the host side) and nothing else, so
no package index is reachable and everything installs from the files the control node ships. Every path of the
roles is on: user, packages (apt without a cache update: the packages are present), install, models, config,
credentials and services. systemd is not PID 1 here, so the units are installed and checked with
`systemd-analyze verify` (symphony_start_services=false), and the test runs each unit's ExecStart as its user
inside the board's namespace. A task from the control node must be answered by the agents of both boards, and a
second provision run must change nothing.

Then the fleet changes over the fabric, without Ansible (docs/fleet-operations.md): a new model that only board1
holds is named in the fleet file, `edge-agent fleet apply --rolling 1` publishes the desired states, board2
fetches the model from board1's model server, both drain, swap and report the new generation, and a task is
answered by both boards' new agents.

Last, the kit itself is upgraded over the fabric: a wheel of this tree with its version bumped, served by the
control node, named with `fleet apply --kit`. The test plays systemd for the units the role installed: it runs the
kit updater's ExecStart as root when the agent writes its spool's request.json (the `.path` unit) and starts the
agent again when it exits non-zero (`Restart=on-failure`). Both boards must come back reporting the new version.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from kit_wheels import build_kit_wheel
from netns_boards import (
    CACHE,
    PREBUILT_WHEELS,
    Board,
    changed_tasks,
    in_namespace,
    provision,
    recap,
    service_user,
    unit_entry,
    wait_for_tcp,
    write_fleet,
)

from broker.mosquitto import find_mosquitto
from broker.policy import free_port
from edge_agent.cli.main import package_version
from shared.messages import TaskAnswer

pytestmark = pytest.mark.slow


@pytest.mark.timeout(1200)
def test_provision_two_boards_over_ssh_then_both_answer_a_task(fleet_dir: Path, boards: list[Board]) -> None:
    llama_wheel = any(PREBUILT_WHEELS.glob("llama_cpp_python-*.whl")) or any(CACHE.glob("llama/*/*.whl"))
    backend = "llamacpp" if llama_wheel else "echo"  # no wheel: the boards could only build from an index
    inventory, fleet = write_fleet(fleet_dir, boards, backend)
    out = fleet_dir / "rendered"

    first, first_s = provision(inventory, fleet, out)
    for board in boards:
        assert recap(first, board.name)["failed"] == 0 and recap(first, board.name)["changed"] > 0
    second, second_s = provision(inventory, fleet, out)
    for board in boards:
        assert recap(second, board.name)["changed"] == 0, changed_tasks(second)
    shipped = re.findall(r"^(board\d) \(.+?\): ([\d.]+) MB to ship", first, re.MULTILINE)
    print(f"\nprovision two boards ({backend}): first run {first_s:.0f} s, second run {second_s:.0f} s; {shipped}")

    # The shipped files landed in each board's prefix, and node.yaml names the copied model.
    for board in boards:
        prefix = fleet_dir / board.name
        node = yaml.safe_load((prefix / "etc/symphony-edge/node.yaml").read_text())
        assert node["node_id"] == board.name
        venv_python = prefix / "opt/symphony-edge/venv/bin/python"
        assert venv_python.exists()
        if backend == "llamacpp":
            model = Path(node["agents"][0]["model"])
            assert model == prefix / "var/lib/symphony-edge/models/SmolLM2-135M-Instruct.Q4_1.gguf"
            assert model.stat().st_size > 50_000_000 and model.owner() == service_user(board)
            probe = subprocess.run([str(venv_python), "-c", "import llama_cpp"], capture_output=True, check=False)
            assert probe.returncode == 0, probe.stderr
        unit = prefix / "etc/systemd/system/symphony-edge-agent.service"
        verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        assert verified.returncode == 0, verified.stderr

    # A model only board1 holds (SmolLM2 with bytes appended: llama.cpp reads tensors by offset), for the change below.
    variant = fleet_dir / "smollm2-variant.gguf"
    if backend == "llamacpp":
        shipped_model = fleet_dir / boards[0].name / "var/lib/symphony-edge/models/SmolLM2-135M-Instruct.Q4_1.gguf"
        variant.write_bytes(shipped_model.read_bytes() + b"\0" * 4096)
        held = shipped_model.with_name(variant.name)
        shutil.copy(variant, held)
        shutil.chown(held, service_user(boards[0]))

    # Start the services as systemd would: mosquitto (the distribution's unit: mosquitto -c <config>, as root,
    # dropping to the mosquitto user), then each board's unit ExecStart as its User, in its namespace.
    broker_board = boards[0]
    config = fleet_dir / broker_board.name / "etc/mosquitto/mosquitto.conf"
    mosquitto = subprocess.Popen(
        ["ip", "netns", "exec", broker_board.namespace, find_mosquitto() or "mosquitto", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=(fleet_dir / "mosquitto.log").open("wb"),
    )
    broker_board.services.append(mosquitto)
    wait_for_tcp(broker_board.address, 1883, mosquitto)
    for board in boards:
        user, command = unit_entry(fleet_dir / board.name / "etc/systemd/system/symphony-edge-agent.service")
        assert user == service_user(board)
        in_namespace(board, user, command, fleet_dir / f"{board.name}.log")

    # A task from the control node (the host side of the bridge), answered by both boards' agents.
    answer = _submit_until_both_answer(out / "clients" / "control.yaml", boards, fleet_dir)
    voters = {ballot.agent_id for subtask in answer.subtasks for ballot in subtask.ballots}
    assert voters == {f"{board.name}-writer" for board in boards}, answer
    assert answer.answer
    if backend == "llamacpp":
        _rolling_model_change(fleet_dir, boards, inventory, fleet, variant)
        _kit_upgrade(fleet_dir, boards, inventory)


class UnitsOfTheRole:
    """systemd's part for the kit upgrade, where systemd is not PID 1: `Restart=on-failure` of the agent unit and
    the kit updater's `.path` unit (its oneshot's ExecStart, as root, in the board's namespace)."""

    def __init__(self, fleet_dir: Path, boards: list[Board]) -> None:
        self.fleet_dir, self.boards = fleet_dir, boards
        self.updaters: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, int] = {board.name: 0 for board in boards}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        # A unit's environment: no PYTHONPATH (this test's points at the checkout, which would shadow the kit the
        # updater installs in the board's venv).
        self.environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONUNBUFFERED": "1"}

    def __enter__(self) -> UnitsOfTheRole:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _units(self, board: Board) -> Path:
        return self.fleet_dir / board.name / "etc/systemd/system"

    def _watch(self) -> None:
        while not self._stop.wait(0.3):
            for board in self.boards:
                agent = board.services[-1]  # the agent unit's process (started last on each board)
                if agent.poll() not in (None, 0):  # Restart=on-failure (a kit upgrade exits 75)
                    self.restarts[board.name] += 1
                    user, command = unit_entry(self._units(board) / "symphony-edge-agent.service")
                    log = (self.fleet_dir / f"{board.name}-restart{self.restarts[board.name]}.log").open("wb")
                    runner = ["ip", "netns", "exec", board.namespace, "runuser", "-u", user, "--", *command]
                    agent = subprocess.Popen(runner, stdout=log, stderr=subprocess.STDOUT, env=self.environment)
                    board.services.append(agent)
                spool = self.fleet_dir / board.name / "var/lib/symphony-edge/kit-spool"
                running = board.name in self.updaters and self.updaters[board.name].poll() is None
                if not running and (spool / "request.json").exists():  # the .path unit starts the oneshot
                    text = (self._units(board) / "symphony-edge-kit-update.service").read_text()
                    start = re.search(r"^ExecStart=(.+)$", text, re.MULTILINE)
                    assert start and not re.search(r"^User=", text, re.MULTILINE)  # root's
                    log = (self.fleet_dir / f"{board.name}-kit-update.log").open("ab")
                    command = ["ip", "netns", "exec", board.namespace, *shlex.split(start.group(1))]
                    self.updaters[board.name] = subprocess.Popen(
                        command, stdout=log, stderr=subprocess.STDOUT, env=self.environment
                    )
                    board.services.insert(0, self.updaters[board.name])  # stopped with the board


def _kit_upgrade(fleet_dir: Path, boards: list[Board], inventory: Path) -> None:
    """A kit wheel of a new version, served by the control node, installed on both boards over the fabric."""
    out = fleet_dir / "rendered"
    new = f"{package_version()}.post7"
    wheel = build_kit_wheel(fleet_dir / "kit", new)
    for board in boards:  # what the role provisioned for the updater
        assert (fleet_dir / board.name / "var/lib/symphony-edge/kit-spool").owner() == service_user(board)
        units = [
            fleet_dir / board.name / f"etc/systemd/system/symphony-edge-kit-update.{kind}"
            for kind in ("service", "path")
        ]
        verified = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True)
        assert verified.returncode == 0, verified.stderr
    control, port = boards[0].address.rsplit(".", 1)[0] + ".1", free_port()
    serve = [sys.executable, "-m", "edge_agent.cli", "models", "serve", str(wheel.parent), "--host", control]
    server = subprocess.Popen([*serve, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    boards[0].services.insert(0, server)
    wait_for_tcp(control, port, server)
    operator = out / "operators" / "ops.yaml"
    command = [sys.executable, "-m", "edge_agent.cli", "fleet", "apply", str(fleet_dir / "fleet-new-model.yml")]
    command += ["-i", str(inventory), "-c", str(operator), "--kit", str(wheel), "--rolling", "1", "--deadline", "300"]
    command += ["--model-source", f"http://{control}:{port}"]
    with UnitsOfTheRole(fleet_dir, boards) as units:
        started = time.monotonic()
        result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        elapsed = time.monotonic() - started
        logs = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in sorted(fleet_dir.glob("board*.log")))
        assert result.returncode == 0, result.stdout + result.stderr + logs
    status = [sys.executable, "-m", "edge_agent.cli", "fleet", "status", "-c", str(operator), "--json"]
    rows = subprocess.run(status, capture_output=True, text=True, timeout=120, check=False)
    assert rows.returncode == 0, rows.stdout + rows.stderr
    reported = {row["node_id"]: row["kit_reported"] for row in map(json.loads, rows.stdout.splitlines())}
    assert reported == {board.name: new for board in boards}, reported
    assert units.restarts == {board.name: 1 for board in boards}
    print(f"kit upgrade {package_version()} -> {new} over the fabric, rolling 1: {elapsed:.0f} s\n{result.stdout}")


def _rolling_model_change(fleet_dir: Path, boards: list[Board], inventory: Path, fleet: Path, variant: Path) -> None:
    out = fleet_dir / "rendered"
    changed = yaml.safe_load(fleet.read_text())
    changed["agents"]["boards"][0]["model"] = str(variant)
    new_fleet = fleet_dir / "fleet-new-model.yml"
    new_fleet.write_text(yaml.safe_dump(changed, sort_keys=False))
    operator = out / "operators" / "ops.yaml"
    command = [sys.executable, "-m", "edge_agent.cli", "fleet", "apply", str(new_fleet), "-i", str(inventory)]
    command += ["-c", str(operator), "--rolling", "1", "--deadline", "300"]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    logs = "\n".join(f"--- {b.name}\n{(fleet_dir / f'{b.name}.log').read_text()[-3000:]}" for b in boards)
    assert result.returncode == 0, result.stdout + result.stderr + logs
    assert "rolled out to 2 node(s)" in result.stdout, result.stdout
    print(f"rolling model change over the fabric: {time.monotonic() - started:.0f} s\n{result.stdout}")
    fetched = list((fleet_dir / boards[1].name / "var/lib/symphony-edge/models").glob("smollm2-variant-*.gguf"))
    assert len(fetched) == 1 and fetched[0].stat().st_size == variant.stat().st_size  # from board1, its only holder
    status = [sys.executable, "-m", "edge_agent.cli", "fleet", "status", "-c", str(operator), "--json"]
    rows = subprocess.run(status, capture_output=True, text=True, timeout=120, check=False)
    assert rows.returncode == 0, rows.stdout + rows.stderr
    # Each new agent answers a direct run. (Not a vote of both: the rollout's probes taught the router to trust
    # one agent more, and a vote whose trusted ballot arrives first stops early, as designed, with one ballot.)
    for board in boards:
        answer = _submit_direct(out / "clients" / "control.yaml", f"{board.name}-writer")
        assert [ballot.agent_id for subtask in answer.subtasks for ballot in subtask.ballots] == [
            f"{board.name}-writer"
        ]


def _submit_direct(client: Path, agent_id: str) -> TaskAnswer:
    """A direct run on `agent_id` (no vote); bounded in tries."""
    command = [sys.executable, "-m", "edge_agent.cli", "submit", "-c", str(client), "What is 2 + 2?", "--json"]
    command += ["--agent", agent_id, "--max-tokens", "24", "--timeout", "40", "--no-trace"]
    for attempt in range(3):
        result = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
        if result.returncode == 0:
            return TaskAnswer.model_validate_json(result.stdout)
        time.sleep(2.0 * (attempt + 1))
    raise AssertionError(f"{agent_id} did not answer a direct run: {result.stdout[-1000:]}{result.stderr[-2000:]}")


def _submit_until_both_answer(client: Path, boards: list[Board], fleet_dir: Path) -> TaskAnswer:
    """Submit (cot_count 2) until both agents are registered and vote; bounded in tries and time."""
    deadline, answer, result = time.monotonic() + 150, None, None
    for attempt in range(6):
        command = [sys.executable, "-m", "edge_agent.cli", "submit", "-c", str(client), "What is 2 + 2?"]
        command += ["--cot-count", "2", "--top-l", "2", "--max-tokens", "24", "--timeout", "40", "--json"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
        if result.returncode == 0:
            answer = TaskAnswer.model_validate_json(result.stdout)
            if len({ballot.agent_id for subtask in answer.subtasks for ballot in subtask.ballots}) == 2:
                return answer
        if time.monotonic() > deadline or any(process.poll() is not None for b in boards for process in b.services):
            break  # out of time, or a service died (its log says why)
        time.sleep(min(2.0 * (attempt + 1), 10.0))
    logs = "\n".join(
        f"--- {name}\n{(fleet_dir / f'{name}.log').read_text()[-2000:]}"
        for name in [*(board.name for board in boards), "mosquitto"]
    )
    last = result.stdout[-1000:] + result.stderr[-2000:] if result else ""
    raise AssertionError(f"no answer with both boards' votes; last: {answer}\n{last}\n{logs}")
