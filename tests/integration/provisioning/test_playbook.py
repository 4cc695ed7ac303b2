"""ansible/site.yml against this machine (local connection, temporary prefix, no root) and ansible-lint."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import REPO

from provisioning.playbook import playbook_command
from provisioning.render import render
from shared.config import load_node_config

pytestmark = pytest.mark.slow
ANSIBLE = REPO / "ansible"
# Package installs and service management stay real in the roles; this run skips them (no root, no network).
LOCAL_MODE = [
    "symphony_become=false",
    "edge_agent_manage_user=false",
    "edge_agent_manage_packages=false",
    "edge_agent_install_package=false",
    "edge_agent_manage_service=false",
    "broker_manage_packages=false",
    "broker_manage_service=false",
    f"ansible_python_interpreter={sys.executable}",  # discovery may pick a broken pyenv shim
]


def needs(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install ansible-core ansible-lint)")


def run_playbook(inventory: Path, out: Path, *extra: str) -> str:
    command = playbook_command(inventory, out, ANSIBLE / "site.yml", extra_vars=LOCAL_MODE) + list(extra)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ANSIBLE)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout


def recap(output: str) -> dict[str, int]:
    line = next(line for line in output.splitlines() if line.startswith("localhost") and "changed=" in line)
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}


@pytest.mark.parametrize("kind", ["mosquitto", "embedded"])
def test_the_playbook_installs_a_node_into_a_prefix_and_a_second_run_changes_nothing(tmp_path: Path, kind: str) -> None:
    needs("ansible")
    prefix = tmp_path / "root"
    fleet = yaml.safe_load((ANSIBLE / "fleet.localhost.yml").read_text())
    fleet["prefix"] = str(prefix)
    fleet["broker"]["kind"] = kind
    fleet["broker"]["tls"] = kind == "embedded"  # the embedded broker serves TLS from the rendered certificates
    (tmp_path / "fleet.yml").write_text(yaml.safe_dump(fleet))
    inventory = ANSIBLE / "inventory.localhost.ini"
    render(inventory, tmp_path / "fleet.yml", tmp_path / "out")

    first = recap(run_playbook(inventory, tmp_path / "out"))
    assert first["failed"] == 0 and first["changed"] > 0
    node = load_node_config(prefix / "etc/symphony-edge/node.yaml", environment=False)
    assert node.node_id == "localhost" and node.connection.username == "localhost"
    assert (prefix / "etc/symphony-edge/node.yaml").stat().st_mode & 0o777 == 0o600
    unit = (prefix / "etc/systemd/system/symphony-edge-agent.service").read_text()
    assert f"edge-agent start -c {prefix}/etc/symphony-edge/node.yaml --router" in unit
    if kind == "mosquitto":
        assert (
            f"password_file {prefix}/etc/symphony-edge/broker/passwd"
            in (prefix / "etc/mosquitto/mosquitto.conf").read_text()
        )
        # root's and only readable by the broker's group (issue 19 item 12; was 0600, owned by mosquitto)
        assert (prefix / "etc/symphony-edge/broker/acl").stat().st_mode & 0o777 == 0o640
        assert (prefix / "etc/mosquitto/mosquitto.conf").stat().st_mode & 0o777 == 0o640
    else:
        broker_unit = (prefix / "etc/systemd/system/symphony-edge-broker.service").read_text()
        assert f"--acl-file {prefix}/etc/symphony-edge/broker/amqtt-acl.yaml" in broker_unit
        tls = f"{prefix}/etc/symphony-edge/broker/tls"
        assert f"--tls-cert {tls}/server.crt --tls-key {tls}/server.key --tls-ca {tls}/ca.crt" in broker_unit
        assert (prefix / "etc/symphony-edge/broker/tls/server.key").stat().st_mode & 0o777 == 0o640

    assert recap(run_playbook(inventory, tmp_path / "out"))["changed"] == 0
    assert recap(run_playbook(inventory, tmp_path / "out", "--check", "--diff"))["changed"] == 0


def test_ansible_lint_production_profile_is_clean() -> None:
    needs("ansiblelint")
    lint = Path(sys.executable).parent / "ansible-lint"
    result = subprocess.run([str(lint)], capture_output=True, text=True, timeout=600, cwd=ANSIBLE)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
