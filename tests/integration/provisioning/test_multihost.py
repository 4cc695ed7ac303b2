"""`edge-agent provision` over SSH onto two boards, each a Linux network namespace with its own sshd.

The boards share this machine's filesystem (so each gets its own prefix: the fleet's prefix names `{host}`) but
not its network: a bridge on a private /24 joins them to the control node (the host side) and nothing else, so
no package index is reachable and everything installs from the files the control node ships. Every path of the
roles is on: user, packages (apt without a cache update: the packages are present), install, models, config,
credentials and services. systemd is not PID 1 here, so the units are installed and checked with
`systemd-analyze verify` (symphony_start_services=false), and the test runs each unit's ExecStart as its user
inside the board's namespace. A task from the control node must be answered by the agents of both boards, and a
second provision run must change nothing.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from support import REPO

from broker.mosquitto import find_mosquitto
from shared.messages import TaskAnswer

pytestmark = pytest.mark.slow
CACHE = Path.home() / ".cache" / "symphony-edge" / "test-artifacts"
# The Makefile's find-links folder (../shared/wheels), or $SYMPHONY_EDGE_WHEELS: a prebuilt llama-cpp-python
PREBUILT_WHEELS = Path(os.environ.get("SYMPHONY_EDGE_WHEELS") or REPO.parent / "shared" / "wheels")
SERVICE_USER = "sefleet"  # + the board's number: each board's user has its own home (the board's state dir)
BOARD_PYTHON = "/usr/bin/python3"


@dataclass
class Board:
    name: str
    namespace: str
    address: str
    sshd: subprocess.Popen[bytes] | None = None
    services: list[subprocess.Popen[bytes]] = field(default_factory=list)


def _why_not() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux (network namespaces)"
    for tool in ("ip", "ssh", "ssh-keygen", "systemd-analyze", "runuser", BOARD_PYTHON, "/usr/sbin/sshd"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install iproute2 openssh-server openssh-client systemd)"
    if find_mosquitto() is None:
        return "mosquitto is not installed"
    packages = ["python3-venv", "python3-pip", "python3-dev", "build-essential", "cmake"]  # Makefile BOARD_PACKAGES
    if shutil.which("dpkg") is None or subprocess.run(["dpkg", "-s", *packages], capture_output=True).returncode:
        return f"the boards reach no apt mirror, so these must be installed here: {' '.join(packages)}"
    if shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) is None:
        return "ansible-core is not installed in this venv"
    probe = f"seprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)


def _free_subnet() -> str:
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    for third in random.sample(range(100, 250), 150):
        if f"10.231.{third}." not in used:
            return f"10.231.{third}"
    pytest.skip("no free 10.231.x.0/24 subnet")


def _wait_for_tcp(address: str, port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {address}:{port} after {timeout} s")


def _start_sshd(board: Board, folder: Path, client_key: Path) -> None:
    folder.mkdir()
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "host_key"))
    (folder / "authorized_keys").write_text(Path(f"{client_key}.pub").read_text())
    config = folder / "sshd_config"
    config.write_text(
        f"ListenAddress {board.address}\nPort 22\nHostKey {folder}/host_key\nPidFile {folder}/sshd.pid\n"
        f"AuthorizedKeysFile {folder}/authorized_keys\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "Subsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    board.sshd = subprocess.Popen(
        ["ip", "netns", "exec", board.namespace, "/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for_tcp(board.address, 22, board.sshd)


def _stop(board: Board) -> None:
    for process in [*board.services, *([board.sshd] if board.sshd else [])]:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    # Whatever still runs in the namespace was started by this test (agents forked by runuser, sshd children).
    pids = subprocess.run(["ip", "netns", "pids", board.namespace], capture_output=True, text=True, check=False)
    for pid in pids.stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), 9)


@pytest.fixture(scope="module")
def fleet_dir() -> Iterator[Path]:
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    # Under /tmp with mode 0755: the boards' service users must traverse it (pytest's tmp_path is 0700).
    folder = Path(tempfile.mkdtemp(prefix="se-fleet-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def boards(fleet_dir: Path) -> Iterator[list[Board]]:
    subnet, tag = _free_subnet(), f"{os.getpid() % 100000}"
    bridge = f"sebr{tag}"
    boards = [Board(f"board{index}", f"se-{tag}-b{index}", f"{subnet}.{index + 1}") for index in (1, 2)]
    key = fleet_dir / "control_key"
    try:
        _run("ip", "link", "add", bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{subnet}.1/24", "dev", bridge)
        _run("ip", "link", "set", bridge, "up")
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        for index, board in enumerate(boards, start=1):
            host_end, board_end = f"seh{tag}{index}", f"seb{tag}{index}"
            _run("ip", "netns", "add", board.namespace)
            _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", board_end)
            _run("ip", "link", "set", board_end, "netns", board.namespace)
            _run("ip", "link", "set", host_end, "master", bridge)
            _run("ip", "link", "set", host_end, "up")
            inside = ["ip", "netns", "exec", board.namespace]
            _run(*inside, "ip", "addr", "add", f"{board.address}/24", "dev", board_end)
            _run(*inside, "ip", "link", "set", board_end, "up")
            _run(*inside, "ip", "link", "set", "lo", "up")
            _start_sshd(board, fleet_dir / f"sshd-{board.name}", key)
        yield boards
    finally:
        for board in boards:
            _stop(board)
            subprocess.run(["ip", "netns", "del", board.namespace], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        for board in boards:
            subprocess.run(["userdel", _user(board)], capture_output=True, check=False)


def _user(board: Board) -> str:
    return SERVICE_USER + board.name.removeprefix("board")


def _write_fleet(fleet_dir: Path, boards: list[Board], backend: str) -> tuple[Path, Path]:
    key = fleet_dir / "control_key"
    inventory = fleet_dir / "inventory.ini"
    lines = ["[brokers]", f"{boards[0].name} ansible_host={boards[0].address}", "", "[boards]"]
    lines += [f"{board.name} ansible_host={board.address} edge_agent_user={_user(board)}" for board in boards]
    lines += [
        "",
        "[all:vars]",
        "ansible_user=root",
        f"ansible_ssh_private_key_file={key}",
        "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'",
        f"ansible_python_interpreter={BOARD_PYTHON}",
        f"edge_agent_python={BOARD_PYTHON}",
        "edge_agent_hardware=cpu",
    ]
    inventory.write_text("\n".join(lines) + "\n")
    agent = {"preset": "writer", "backend": backend, "max_tokens": 24}
    fleet = {
        "fabric": "netns",
        "prefix": f"{fleet_dir}/{{host}}",
        "broker": {"kind": "mosquitto", "hosts": ["brokers"]},
        "agents": {"boards": [agent]},
        "routers": [boards[0].name],
        "clients": ["control"],
    }
    path = fleet_dir / "fleet.yml"
    path.write_text(yaml.safe_dump(fleet, sort_keys=False))
    return inventory, path


def _provision(inventory: Path, fleet: Path, out: Path) -> tuple[str, float]:
    command = [sys.executable, "-m", "edge_agent.cli", "provision", "-i", str(inventory), "--fleet", str(fleet)]
    command += ["-o", str(out), "--artifacts", str(CACHE), "--no-build-llama"]
    command += ["--find-links", str(PREBUILT_WHEELS)] if PREBUILT_WHEELS.is_dir() else []
    # No become (the test logs in as root: the boards have no sudo); no apt cache update (no mirror is
    # reachable; the packages are present); units installed and verified but started by the test.
    for variable in ("symphony_become=false", "edge_agent_apt_update_cache=false", "symphony_start_services=false"):
        command += ["-e", variable]
    environment = {**os.environ, "ANSIBLE_PIPELINING": "True", "ANSIBLE_HOST_KEY_CHECKING": "False"}
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=environment, cwd=fleet.parent)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return result.stdout, elapsed


def _recap(output: str, host: str) -> dict[str, int]:
    line = next(line for line in output.splitlines() if line.startswith(host) and "changed=" in line)
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}


def _changed_tasks(output: str) -> list[str]:
    """The tasks that reported `changed` (with the host), for a readable failure."""
    task, found = "", []
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line
        elif line.startswith("changed:"):
            found.append(f"{task} {line}")
    return found


def _unit(path: Path) -> tuple[str, list[str]]:
    """The User= and ExecStart= of a rendered unit."""
    text = path.read_text()
    user = re.search(r"^User=(.+)$", text, re.MULTILINE)
    start = re.search(r"^ExecStart=(.+)$", text, re.MULTILINE)
    assert user and start, text
    return user.group(1), shlex.split(start.group(1))


def _in_namespace(board: Board, user: str, command: list[str], log: Path) -> subprocess.Popen[bytes]:
    runner = ["ip", "netns", "exec", board.namespace, "runuser", "-u", user, "--", "env", "PYTHONUNBUFFERED=1"]
    process = subprocess.Popen(runner + command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    board.services.append(process)
    return process


@pytest.mark.timeout(900)
def test_provision_two_boards_over_ssh_then_both_answer_a_task(fleet_dir: Path, boards: list[Board]) -> None:
    llama_wheel = any(PREBUILT_WHEELS.glob("llama_cpp_python-*.whl")) or any(CACHE.glob("llama/*/*.whl"))
    backend = "llamacpp" if llama_wheel else "echo"  # no wheel: the boards could only build from an index
    inventory, fleet = _write_fleet(fleet_dir, boards, backend)
    out = fleet_dir / "rendered"

    first, first_s = _provision(inventory, fleet, out)
    for board in boards:
        assert _recap(first, board.name)["failed"] == 0 and _recap(first, board.name)["changed"] > 0
    second, second_s = _provision(inventory, fleet, out)
    for board in boards:
        assert _recap(second, board.name)["changed"] == 0, _changed_tasks(second)
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
            assert model.stat().st_size > 50_000_000 and model.owner() == _user(board)
            probe = subprocess.run([str(venv_python), "-c", "import llama_cpp"], capture_output=True, check=False)
            assert probe.returncode == 0, probe.stderr
        unit = prefix / "etc/systemd/system/symphony-edge-agent.service"
        verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        assert verified.returncode == 0, verified.stderr

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
    _wait_for_tcp(broker_board.address, 1883, mosquitto)
    for board in boards:
        user, command = _unit(fleet_dir / board.name / "etc/systemd/system/symphony-edge-agent.service")
        assert user == _user(board)
        _in_namespace(board, user, command, fleet_dir / f"{board.name}.log")

    # A task from the control node (the host side of the bridge), answered by both boards' agents.
    answer = _submit_until_both_answer(out / "clients" / "control.yaml", boards, fleet_dir)
    voters = {ballot.agent_id for subtask in answer.subtasks for ballot in subtask.ballots}
    assert voters == {f"{board.name}-writer" for board in boards}, answer
    assert answer.answer


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
