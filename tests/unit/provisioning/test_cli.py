"""`edge-agent provision`: render only, clear errors (exit 2), the ansible-playbook command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from edge_agent.cli.main import cli
from provisioning.playbook import playbook_command

INVENTORY = "[brokers]\nhub ansible_host=10.0.0.1\n"
FLEET = {
    "fabric": "lab",
    "broker": {"hosts": ["hub"], "tls": False},
    "agents": {"hub": [{"backend": "echo"}]},
    "routers": ["hub"],
}


def write(directory: Path, inventory: str = INVENTORY, fleet: object = FLEET) -> Path:
    (directory / "inventory.ini").write_text(inventory)
    (directory / "fleet.yml").write_text(yaml.safe_dump(fleet))
    return directory / "inventory.ini"


def test_render_writes_the_fleet_next_to_the_inventory_and_prints_no_secret(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["provision", "render", "-i", str(write(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "rendered 1 node(s)" in result.output
    password = yaml.safe_load((tmp_path / "rendered/secrets.yaml").read_text())["passwords"]["hub"]
    assert password not in result.output
    assert (tmp_path / "rendered/nodes/hub/node.yaml").exists()


def test_tls_is_the_default_and_turning_it_off_is_warned_about_on_stderr(tmp_path: Path) -> None:
    plain = CliRunner().invoke(cli, ["provision", "render", "-i", str(write(tmp_path))])
    assert plain.exit_code == 0, plain.output
    assert "broker.tls: false" in plain.stderr and "clear text" in plain.stderr
    default = {**FLEET, "broker": {"hosts": ["hub"]}}
    (tmp_path / "tls").mkdir()
    secured = CliRunner().invoke(cli, ["provision", "render", "-i", str(write(tmp_path / "tls", fleet=default))])
    assert secured.exit_code == 0, secured.output
    assert "clear text" not in secured.stderr
    node = yaml.safe_load((tmp_path / "tls/rendered/nodes/hub/node.yaml").read_text())
    assert node["connection"]["brokers"] == ["mqtts://10.0.0.1:8883"] and "tls" in node["connection"]


@pytest.mark.parametrize(
    ("inventory", "fleet", "message"),
    [
        ("[broken\n", FLEET, "unclosed section"),
        (INVENTORY, {"broker": {"hosts": ["elsewhere"]}}, "elsewhere"),
        (INVENTORY, ["not", "a", "mapping"], "must be a mapping"),
        (INVENTORY, {"broker": {"hosts": ["hub"], "kind": "rabbit"}}, "broker.kind"),
    ],
)
def test_a_bad_inventory_or_fleet_file_exits_2_with_the_reason(
    tmp_path: Path, inventory: str, fleet: object, message: str
) -> None:
    result = CliRunner().invoke(cli, ["provision", "render", "-i", str(write(tmp_path, inventory, fleet))])
    assert result.exit_code == 2
    assert message in result.output


def test_a_missing_inventory_option_or_file_exits_2(tmp_path: Path) -> None:
    assert CliRunner().invoke(cli, ["provision", "render"]).exit_code == 2
    assert CliRunner().invoke(cli, ["provision", "render", "-i", str(tmp_path / "nope.ini")]).exit_code == 2


def test_the_playbook_command_passes_the_rendered_variables_check_and_limit(tmp_path: Path) -> None:
    pytest.importorskip("ansible", reason="ansible-core is not installed")
    playbook = tmp_path / "site.yml"
    playbook.write_text("---\n")
    command = playbook_command(tmp_path / "inv.ini", tmp_path / "out", playbook, check=True, limit="hub")
    assert command[1:4] == ["-i", str(tmp_path / "inv.ini"), str(playbook)]
    assert ["-e", f"@{tmp_path / 'out' / 'ansible-vars.yml'}"] == command[4:6]
    assert command[6:] == ["--check", "--diff", "--limit", "hub"]
