"""`edge-agent doctor` as a user runs it: a healthy fleet, a wrong password, an unreachable broker, a bad model."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import REPO, RunningBroker, mosquitto_command

from broker.mosquitto import MosquittoConfig, find_mosquitto
from broker.policy import free_port


def doctor(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "edge_agent.cli", "doctor", *arguments]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def lines_of(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Check name -> label."""
    found = {}
    for line in result.stdout.splitlines():
        label, _, rest = line.partition("  ")
        if label in ("PASS", "FAIL", "WARN"):
            found[rest.split(":", 1)[0]] = label
    return found


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[RunningBroker]:
    """mosquitto that accepts only `node-1` / `right-password`."""
    binary = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if find_mosquitto() is None or not Path(binary).exists():
        pytest.skip("mosquitto and mosquitto_passwd are needed (`apt-get install mosquitto`)")
    folder = Path(tempfile.mkdtemp(prefix="symphony-doctor-"))  # pytest's tmp dirs are private to their owner
    folder.chmod(0o711)
    password_file = folder / "passwords"
    subprocess.run([binary, "-b", "-c", str(password_file), "node-1", "right-password"], check=True, timeout=30)
    if os.geteuid() == 0:  # mosquitto started as root drops to the mosquitto user, which must read the file
        with contextlib.suppress(KeyError):
            account = pwd.getpwnam("mosquitto")
            os.chown(password_file, account.pw_uid, account.pw_gid)
    port = free_port()
    config = MosquittoConfig(host="127.0.0.1", port=port, password_file=password_file)
    broker = RunningBroker("mosquitto", port, mosquitto_command(tmp_path, port, config))
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)


def node_file(tmp_path: Path, broker: RunningBroker, fabric: str, password: str, **agent: str) -> Path:
    path = tmp_path / "node.yaml"
    connection = {"fabric": fabric, "brokers": [broker.url], "username": "node-1", "password": password}
    agents = [{"preset": "math", "backend": "echo", **agent}]
    path.write_text(yaml.safe_dump({"node_id": "board-a", "connection": connection, "agents": agents}))
    return path


def test_doctor_passes_on_a_healthy_node(fleet: Any) -> None:
    fleet.agent("board-a")
    result = doctor(
        "-b", fleet.broker.url, "--fabric", fleet.fabric, "--node-id", "board-a", "--wait", "8", env=fleet.env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    labels = lines_of(result)
    assert labels["beacon of board-a"] == "PASS"
    assert labels["ACL"] == "PASS"
    assert labels["node id unique"] == "PASS"
    assert labels["clock skew"] == "PASS"
    assert "all checks passed" in result.stdout


def test_doctor_fails_clearly_with_a_wrong_password(
    password_broker: RunningBroker, fabric: str, tmp_path: Path
) -> None:
    config = node_file(tmp_path, password_broker, fabric, "wrong-password")
    result = doctor("-c", str(config), "--wait", "0.5")
    assert result.returncode == 1
    assert "PASS  broker reachable" in result.stdout
    assert "FAIL  credentials accepted (user 'node-1'): broker" in result.stdout
    assert "refused the connection" in result.stdout
    assert "fix: check connection.username/password" in result.stdout
    assert "wrong-password" not in result.stdout + result.stderr
    assert "ACL" not in result.stdout  # nothing above a refused login is attempted


def test_doctor_accepts_the_right_password(password_broker: RunningBroker, fabric: str, tmp_path: Path) -> None:
    config = node_file(tmp_path, password_broker, fabric, "right-password")
    result = doctor("-c", str(config), "--wait", "0.5")
    assert result.returncode == 0, result.stdout
    assert "PASS  credentials accepted (user 'node-1')" in result.stdout


def test_doctor_fails_clearly_when_the_broker_is_unreachable() -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    result = doctor("-b", url, "--fabric", "nowhere", "--timeout", "1")
    assert result.returncode == 1
    assert f"FAIL  broker reachable ({url}): cannot open a TCP connection" in result.stdout
    assert "fix: start the broker" in result.stdout
    assert "credentials accepted" not in result.stdout


def test_doctor_reports_a_missing_model_file(password_broker: RunningBroker, fabric: str, tmp_path: Path) -> None:
    config = node_file(tmp_path, password_broker, fabric, "right-password", backend="llamacpp", model="missing.gguf")
    result = doctor("-c", str(config), "--wait", "0.5")
    assert result.returncode == 1
    assert "FAIL  model of board-a-math: model file not found" in result.stdout or "no model matches" in result.stdout
    assert "edge-agent models pull smollm2" in result.stdout


def test_status_fails_clearly_with_a_wrong_password(
    password_broker: RunningBroker, fabric: str, tmp_path: Path
) -> None:
    config = node_file(tmp_path, password_broker, fabric, "wrong-password")
    command = [sys.executable, "-m", "edge_agent.cli", "status", "-c", str(config)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: broker {password_broker.url} refused the connection: Not authorized"
