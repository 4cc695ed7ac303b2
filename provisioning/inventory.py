"""Read an Ansible inventory (INI or YAML) into hosts and groups, without needing Ansible installed.

Only what provisioning needs is read: host names, the groups each host belongs to (with `:children` nesting),
and host/group variables (`ansible_host` tells where a broker host is reachable). Host ranges such as
`node[01:10]` are not expanded; list hosts one by one.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from provisioning.errors import ProvisioningError


@dataclass
class Inventory:
    """Hosts (name -> variables) and groups (name -> direct hosts, child groups)."""

    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    group_hosts: dict[str, list[str]] = field(default_factory=dict)
    group_children: dict[str, list[str]] = field(default_factory=dict)
    group_vars: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_host(self, name: str, group: str, variables: dict[str, Any]) -> None:
        self.hosts.setdefault(name, {}).update(variables)
        members = self.group_hosts.setdefault(group, [])
        if name not in members:
            members.append(name)

    def members(self, group: str, _seen: frozenset[str] = frozenset()) -> list[str]:
        """Hosts of `group` including its child groups, in inventory order ('all' is every host)."""
        if group == "all":
            return list(self.hosts)
        found = list(self.group_hosts.get(group, []))
        for child in self.group_children.get(group, []):
            if child not in _seen:
                found += [host for host in self.members(child, _seen | {group}) if host not in found]
        return found

    def is_group(self, name: str) -> bool:
        return name == "all" or name in self.group_hosts or name in self.group_children

    def address(self, host: str) -> str:
        """Where `host` is reachable: its `ansible_host`, else its name."""
        return str(self.hosts.get(host, {}).get("ansible_host", host))


def load_inventory(path: Path) -> Inventory:
    """Parse an inventory file; raises ProvisioningError naming the file and line on a mistake."""
    try:
        text = path.read_text()
    except OSError as error:
        raise ProvisioningError(f"{path}: cannot read the inventory ({error.strerror})") from None
    inventory = (
        parse_yaml_inventory(text, path) if path.suffix in (".yml", ".yaml") else parse_ini_inventory(text, path)
    )
    if not inventory.hosts:
        raise ProvisioningError(f"{path}: the inventory lists no hosts")
    return inventory


def parse_ini_inventory(text: str, source: Path | str = "inventory") -> Inventory:
    """Parse the INI inventory format: `[group]`, `[group:vars]`, `[group:children]`, `host key=value`."""
    inventory = Inventory()
    section, kind = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ProvisioningError(f"{source}:{number}: unclosed section header {line!r}")
            section, _, kind = line[1:-1].partition(":")
            kind = kind or "hosts"
            if kind not in ("hosts", "vars", "children"):
                raise ProvisioningError(f"{source}:{number}: unknown section kind {kind!r}")
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as error:
            raise ProvisioningError(f"{source}:{number}: {error}") from None
        if kind == "children":
            inventory.group_children.setdefault(section, []).append(words[0])
        elif kind == "vars":
            key, separator, value = line.partition("=")
            if not separator:
                raise ProvisioningError(f"{source}:{number}: expected key=value in [{section}:vars]")
            inventory.group_vars.setdefault(section, {})[key.strip()] = value.strip()
        else:
            inventory.add_host(words[0], section, _host_variables(words[1:], source, number))
    return inventory


def _host_variables(words: list[str], source: Path | str, number: int) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    for word in words:
        key, separator, value = word.partition("=")
        if not separator:
            raise ProvisioningError(f"{source}:{number}: expected key=value, got {word!r}")
        variables[key] = value
    return variables


def parse_yaml_inventory(text: str, source: Path | str = "inventory") -> Inventory:
    """Parse the YAML inventory format: `all: {hosts: ..., children: {group: {hosts: ..., vars: ...}}}`."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ProvisioningError(f"{source}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ProvisioningError(f"{source}: the top level must map group names to groups")
    inventory = Inventory()
    for name, group in data.items():
        _read_yaml_group(inventory, str(name), group, source)
    return inventory


def _read_yaml_group(inventory: Inventory, name: str, group: Any, source: Path | str) -> None:
    group = group or {}
    if not isinstance(group, dict):
        raise ProvisioningError(f"{source}: group {name!r} must be a mapping with hosts/children/vars")
    for host, variables in (group.get("hosts") or {}).items():
        if variables is not None and not isinstance(variables, dict):
            raise ProvisioningError(f"{source}: variables of host {host!r} must be a mapping")
        inventory.add_host(str(host), name, dict(variables or {}))
    inventory.group_vars.setdefault(name, {}).update(group.get("vars") or {})
    for child, child_group in (group.get("children") or {}).items():
        inventory.group_children.setdefault(name, []).append(str(child))
        _read_yaml_group(inventory, str(child), child_group, source)
