"""Inventory parsing (INI and YAML), table-driven."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioning.errors import ProvisioningError
from provisioning.inventory import Inventory, load_inventory, parse_ini_inventory, parse_yaml_inventory

INI = """
# comment
solo ansible_host=10.0.0.9

[jetson]
j1 ansible_host=10.0.0.1 ansible_user="nv idia"
j2

[cpu]
pi

[agents:children]
jetson
cpu

[agents:vars]
ansible_python_interpreter=/usr/bin/python3
"""

YAML = """
all:
  hosts:
    solo: {ansible_host: 10.0.0.9}
  children:
    agents:
      children:
        jetson:
          hosts:
            j1: {ansible_host: 10.0.0.1}
            j2:
        cpu:
          hosts:
            pi:
"""


@pytest.mark.parametrize("inventory", [parse_ini_inventory(INI), parse_yaml_inventory(YAML)], ids=["ini", "yaml"])
def test_hosts_groups_and_addresses(inventory: Inventory) -> None:
    assert list(inventory.hosts) == ["solo", "j1", "j2", "pi"]
    assert inventory.members("agents") == ["j1", "j2", "pi"]
    assert inventory.members("all") == ["solo", "j1", "j2", "pi"]
    assert inventory.address("j1") == "10.0.0.1"
    assert inventory.address("j2") == "j2"
    assert inventory.is_group("jetson") and not inventory.is_group("j1")


def test_ini_quoted_values_and_group_vars() -> None:
    inventory = parse_ini_inventory(INI)
    assert inventory.hosts["j1"]["ansible_user"] == "nv idia"
    assert inventory.group_vars["agents"]["ansible_python_interpreter"] == "/usr/bin/python3"


@pytest.mark.parametrize(
    ("text", "message"),
    [("[open\nhost", "unclosed"), ("[g:weird]\nh", "unknown section"), ("h notakeyvalue", "key=value")],
)
def test_bad_ini_lines_are_named(text: str, message: str) -> None:
    with pytest.raises(ProvisioningError, match=message):
        parse_ini_inventory(text, "inv.ini")


@pytest.mark.parametrize(("name", "text"), [("a.ini", "# nothing\n"), ("a.yml", "all: [1, 2]"), ("b.yml", "::: x")])
def test_empty_or_malformed_inventory_files_are_refused(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ProvisioningError, match=name):
        load_inventory(tmp_path / name)
