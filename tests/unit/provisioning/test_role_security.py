"""What the Ansible roles promise about secrets, ownership and service users (issue 19, items 10 and 12).

Read from the roles themselves, so a new task that ships a secret without `diff: false`, or a broker that runs as
the agents' user again, fails here before any playbook runs. The playbook tests run the same roles for real.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

ANSIBLE = Path(__file__).resolve().parents[3] / "ansible"
SECRET_NAMES = ("node.yaml", "mosquitto.conf", "passwd", "amqtt-passwd", ".key", "client.key", "api-keys", "secrets")
FILE_MODULES = ("ansible.builtin.copy", "ansible.builtin.template", "copy", "template")


def tasks() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted([*ANSIBLE.glob("roles/*/tasks/*.yml"), *ANSIBLE.glob("*.yml")]):
        for task in yaml.safe_load(path.read_text()) or []:
            if isinstance(task, dict):
                found.append((f"{path.relative_to(ANSIBLE)}: {task.get('name')}", task))
    return found


def ships_a_secret(task: dict[str, Any]) -> bool:
    module = next((task[name] for name in FILE_MODULES if name in task), None)
    if module is None:
        return False
    text = yaml.safe_dump({"module": module, "loop": task.get("loop")})
    return any(name in text for name in SECRET_NAMES)


def defaults(role: str) -> dict[str, Any]:
    return yaml.safe_load((ANSIBLE / "roles" / role / "defaults" / "main.yml").read_text())


def test_the_roles_ship_secrets_in_tasks_that_the_check_diff_never_prints() -> None:
    secret_tasks = [(name, task) for name, task in tasks() if ships_a_secret(task)]
    names = " | ".join(name for name, _ in secret_tasks)
    for expected in ("node configuration", "mosquitto configuration", "password file", "TLS"):
        assert expected in names, f"no secret-bearing task named {expected!r}: the check below found nothing"
    printed = [name for name, task in secret_tasks if task.get("diff") is not False]
    assert printed == []


def test_the_broker_configuration_is_roots_and_only_readable_by_the_broker() -> None:
    by_name = dict(tasks())
    for name, task in by_name.items():
        if not name.startswith("roles/broker/") or not ships_a_secret(task):
            continue
        module = task.get("ansible.builtin.copy") or task.get("ansible.builtin.template")
        assert module["owner"] == "{{ broker_config_owner }}", name
        assert module["group"] == "{{ broker_group }}", name
        assert module["mode"] == "0640", name
    broker = defaults("broker")
    assert "'root'" in broker["broker_config_owner"]
    persistence = next(task for name, task in by_name.items() if "Create the persistence directory" in name)
    assert persistence["ansible.builtin.file"]["owner"] == "{{ broker_owner }}"


def test_the_embedded_broker_and_the_agents_run_as_different_users() -> None:
    broker_user = defaults("broker")["broker_embedded_user"]
    agent_user = defaults("edge_agent")["edge_agent_user"]
    assert broker_user != agent_user
    assert broker_user == "symphony-broker"


def user_lines(unit: Path) -> list[str]:
    return [line for line in unit.read_text().splitlines() if line.startswith("User=")]


def render_unit(role: str, template: str, variables: dict[str, Any], folder: Path) -> Path:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(ANSIBLE / "roles" / role / "templates"))
    environment.filters["bool"] = bool  # Ansible's filter, enough for the booleans passed here
    unit = folder / template.removesuffix(".j2")
    unit.write_text(environment.get_template(template).render(ansible_managed="test", **variables))
    return unit


def test_the_rendered_units_name_their_own_users_and_verify(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "edge-agent").write_text("#!/bin/sh\nexit 0\n")
    (venv / "bin" / "edge-agent").chmod(0o755)
    broker = render_unit(
        "broker",
        "symphony-edge-broker.service.j2",
        {
            "broker_embedded_user": defaults("broker")["broker_embedded_user"],
            "broker_venv_dir": venv,
            "broker_bind": "0.0.0.0",
            "broker_port": 1883,
            "broker_dir": tmp_path / "broker",
            "broker_tls": True,
        },
        tmp_path,
    )
    agent = render_unit(
        "edge_agent",
        "symphony-edge-agent.service.j2",
        {
            "inventory_hostname": "board1",
            "edge_agent_user": defaults("edge_agent")["edge_agent_user"],
            "edge_agent_command": f"{venv}/bin/edge-agent start -c /etc/symphony-edge/node.yaml",
            "edge_agent_state_dir": tmp_path / "state",
            "edge_agent_accelerator": "cpu",
        },
        tmp_path,
    )
    users = {unit.name: user_lines(unit) for unit in (broker, agent)}
    assert users == {broker.name: ["User=symphony-broker"], agent.name: ["User=symphony"]}
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    for unit in (broker, agent):
        verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
        assert verified.returncode == 0, verified.stderr


def test_the_kit_updater_runs_as_root_and_may_write_only_the_venv_its_keep_folder_and_the_spool(tmp_path: Path) -> None:
    venv, keep, spool = tmp_path / "venv", tmp_path / "kit", tmp_path / "state" / "kit-spool"
    for folder in (venv / "bin", keep, spool):
        folder.mkdir(parents=True)
    (venv / "bin" / "edge-agent").write_text("#!/bin/sh\nexit 0\n")
    (venv / "bin" / "edge-agent").chmod(0o755)
    variables = {
        "inventory_hostname": "board1",
        "edge_agent_kit_update_command": f"{venv}/bin/edge-agent kit-update -c /etc/symphony-edge/node.yaml",
        "edge_agent_venv_dir": venv,
        "edge_agent_kit_keep_dir": keep,
        "edge_agent_kit_spool_dir": spool,
        "edge_agent_kit_update_name": defaults("edge_agent")["edge_agent_kit_update_name"],
    }
    service = render_unit("edge_agent", "symphony-edge-kit-update.service.j2", variables, tmp_path)
    path = render_unit("edge_agent", "symphony-edge-kit-update.path.j2", variables, tmp_path)
    text = service.read_text()
    assert user_lines(service) == [] and "Type=oneshot" in text and "ProtectSystem=strict" in text
    assert f"ReadWritePaths={venv} {keep} {spool}" in text.splitlines()
    assert f"PathExists={spool}/request.json" in path.read_text()
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(service), str(path)], capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0, verified.stderr
