"""Test boards for the multi-host provisioning tests: Linux network namespaces, each with its own sshd.

The boards share this machine's filesystem (so each gets its own prefix: the fleet's prefix names `{host}`) but
not its network: a bridge on a private /24 joins them to the control node (the host side) and nothing else, so
no package index is reachable and everything installs from the files the control node ships. The fixtures
(`fleet_dir`, `boards`) live in tests/integration/provisioning/conftest.py; the helpers here write the fleet,
run `edge-agent provision` and read its recap.
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
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from support import REPO

from broker.mosquitto import find_mosquitto

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


def why_not() -> str | None:
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


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)


def free_subnet() -> str:
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    for third in random.sample(range(100, 250), 150):
        if f"10.231.{third}." not in used:
            return f"10.231.{third}"
    pytest.skip("no free 10.231.x.0/24 subnet")


def wait_for_tcp(address: str, port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
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


def start_sshd(board: Board, folder: Path, client_key: Path) -> None:
    folder.mkdir()
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "host_key"))
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
    wait_for_tcp(board.address, 22, board.sshd)


def stop(board: Board) -> None:
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


def service_user(board: Board) -> str:
    return SERVICE_USER + board.name.removeprefix("board")


def write_fleet(fleet_dir: Path, boards: list[Board], backend: str) -> tuple[Path, Path]:
    key = fleet_dir / "control_key"
    inventory = fleet_dir / "inventory.ini"
    lines = ["[brokers]", f"{boards[0].name} ansible_host={boards[0].address}", "", "[boards]"]
    lines += [f"{board.name} ansible_host={board.address} edge_agent_user={service_user(board)}" for board in boards]
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
        "broker": {"kind": "mosquitto", "hosts": ["brokers"], "tls": False},
        "agents": {"boards": [agent]},
        "routers": [boards[0].name],
        "clients": ["control", "ops"],
        "operators": ["ops"],  # publishes desired states (fleet apply) and probes the new agents (also a client)
    }
    path = fleet_dir / "fleet.yml"
    path.write_text(yaml.safe_dump(fleet, sort_keys=False))
    return inventory, path


def provision(
    inventory: Path,
    fleet: Path,
    out: Path,
    options: Sequence[str] | None = None,
    cache: Path = CACHE,
    environment: dict[str, str] | None = None,
    exit_code: int = 0,
) -> tuple[str, float]:
    """Run `edge-agent provision` against the boards; returns its output (stdout, and stderr when it is to fail)
    and seconds. `options` default: the prebuilt llama-cpp-python wheel (find-links) and no build of it anywhere
    (--no-build-llama)."""
    if options is None:
        options = ["--no-build-llama", *(["--find-links", str(PREBUILT_WHEELS)] if PREBUILT_WHEELS.is_dir() else [])]
    command = [sys.executable, "-m", "edge_agent.cli", "provision", "-i", str(inventory), "--fleet", str(fleet)]
    command += ["-o", str(out), "--artifacts", str(cache), *options]
    # No become (the test logs in as root: the boards have no sudo); no apt cache update (no mirror is
    # reachable; the packages are present); units installed and verified but started by the test.
    for variable in ("symphony_become=false", "edge_agent_apt_update_cache=false", "symphony_start_services=false"):
        command += ["-e", variable]
    environment = {
        **os.environ,
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        **(environment or {}),
    }
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=environment, cwd=fleet.parent)
    elapsed = time.monotonic() - started
    assert result.returncode == exit_code, result.stdout[-6000:] + result.stderr[-3000:]
    return (result.stdout if exit_code == 0 else result.stdout + result.stderr), elapsed


def recap(output: str, host: str) -> dict[str, int]:
    line = next(line for line in output.splitlines() if line.startswith(host) and "changed=" in line)
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}


def changed_tasks(output: str) -> list[str]:
    """The tasks that reported `changed` (with the host), for a readable failure."""
    task, found = "", []
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line
        elif line.startswith("changed:"):
            found.append(f"{task} {line}")
    return found


def unit_entry(path: Path) -> tuple[str, list[str]]:
    """The User= and ExecStart= of a rendered unit."""
    text = path.read_text()
    user = re.search(r"^User=(.+)$", text, re.MULTILINE)
    start = re.search(r"^ExecStart=(.+)$", text, re.MULTILINE)
    assert user and start, text
    return user.group(1), shlex.split(start.group(1))


def in_namespace(board: Board, user: str, command: list[str], log: Path) -> subprocess.Popen[bytes]:
    runner = ["ip", "netns", "exec", board.namespace, "runuser", "-u", user, "--", "env", "PYTHONUNBUFFERED=1"]
    process = subprocess.Popen(runner + command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    board.services.append(process)
    return process
