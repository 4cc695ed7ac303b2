"""The fleet file: what runs where, on top of an Ansible inventory.

```yaml
fabric: home                 # topic prefix symphony/home
prefix: ""                   # install prefix on the targets ("" = the real /etc, /var/lib, /opt; {host} = the host)
broker:
  kind: mosquitto            # or: embedded (amqtt, as a systemd service)
  hosts: [brokers]           # inventory hosts or groups; nodes connect to each in turn (failover)
  port: 1883                 # default 8883 with tls
  bind: 0.0.0.0
  tls: true                  # the default: a CA plus a certificate per broker, node, client and operator (both
                             # kinds); false sends passwords and messages in clear text (`provision` warns)
  sites:                     # optional: site brokers bridged to the hub (`hosts`), one fabric (mosquitto only)
    east: {broker: east-gw, members: [east], clients: [laptop]}   # members: hosts/groups at the site
agents:                      # inventory host or group -> agents; the most specific entry wins
  all:    [{preset: writer}]
  jetson: [{preset: coder, backend: llamacpp}, {preset: math}]
routers: [brokers]           # hosts or groups that also host the routing and voting handlers
clients: [laptop]            # one account per client id (write task/submit/<id>, read reply/<id>, its tasks' events)
teachers: [bench]            # client accounts whose gold answers and labels teach the routers (docs/tenancy.md)
limits: {tasks: 16}          # per-account caps on the routers (tasks in flight, cot_count, plan_k, steps)
max_deadline_s: 600          # the longest deadline a task gets (a client's deadline_s is capped to it)
operators: [ops]             # read beacons, states, routers and all task events; submit only if also a client
home_assistant: {}           # optional: nodes publish Home Assistant discovery configs ({discovery_prefix: ...})
model_servers: {port: 8765}  # nodes serve the models they hold to peers (docs/fleet-operations.md); null: off
```
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from provisioning.errors import ProvisioningError
from provisioning.inventory import Inventory
from shared.config import AccountLimits, AgentConfig, HomeAssistantSettings
from shared.topics import validate_id


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteSpec(_Strict):
    """A site broker, bridged to the hub, and who lives at the site (they connect to it first, then the hub)."""

    broker: str
    members: tuple[str, ...] = ()
    clients: tuple[str, ...] = ()


class BrokerSpec(_Strict):
    kind: Literal["mosquitto", "embedded"] = "mosquitto"
    hosts: tuple[str, ...] = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    bind: str = "0.0.0.0"
    tls: bool = True  # false is an explicit choice: see plaintext_warning
    sites: dict[str, SiteSpec] = Field(default_factory=dict)
    # What crosses the WAN links (docs/sites.md). full: every beacon and state. summaries: a site that hosts a
    # router sends its summary instead (router/summaries.py); runs reach it through its site agent.
    wan: Literal["full", "summaries"] = "full"

    @field_validator("sites")
    @classmethod
    def _check_sites(cls, value: dict[str, SiteSpec]) -> dict[str, SiteSpec]:
        for name in value:
            validate_id(name, "site name")
        return value

    @property
    def listen_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)


class ModelServersSpec(_Strict):
    """Every node serves the models it holds to its peers, on its inventory address."""

    port: int = Field(default=8765, ge=1, le=65535)
    strict_port: bool = False  # port in use on a board: no model server (default: any free port, in the beacon)
    max_uploads: int = Field(default=4, ge=1, le=64)


class FleetSpec(_Strict):
    """A validated fleet file."""

    fabric: str = "default"
    prefix: str = ""
    broker: BrokerSpec
    agents: dict[str, tuple[AgentConfig, ...]] = Field(default_factory=dict)
    routers: tuple[str, ...] = ()
    clients: tuple[str, ...] = ()
    operators: tuple[str, ...] = ()
    home_assistant: HomeAssistantSettings | None = None
    teachers: tuple[str, ...] = ()  # clients whose labels teach the routers (router settings `teachers`)
    limits: AccountLimits = AccountLimits(tasks=16)  # every client's caps on the routers
    account_limits: dict[str, AccountLimits] = Field(default_factory=dict)  # one client's caps instead
    max_deadline_s: float = Field(default=600.0, gt=0, le=3600.0)
    model_servers: ModelServersSpec | None = ModelServersSpec()

    @field_validator("fabric")
    @classmethod
    def _check_fabric(cls, value: str) -> str:
        return validate_id(value, "fabric name")

    @field_validator("clients", "operators", "teachers")
    @classmethod
    def _check_clients(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for account in value:
            validate_id(account, "account id")
        return value

    @model_validator(mode="after")
    def _check_teachers(self) -> FleetSpec:
        strangers = sorted(set(self.teachers) - set(self.clients))
        if strangers:
            raise ValueError(f"teachers must be clients (they submit the labelled tasks): {strangers}")
        return self

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if value and not PurePosixPath(value).is_absolute():
            raise ValueError("prefix must be an absolute path (or empty)")
        return value.rstrip("/")


def plaintext_warning(fleet: FleetSpec, path: Path) -> str | None:
    """The line `provision` prints when the fleet file turned TLS off (None with TLS)."""
    if fleet.broker.tls:
        return None
    return (
        f"warning: {path} sets broker.tls: false: MQTT passwords and every task, answer and beacon cross the "
        "network in clear text, and nothing stops a host on the LAN before the MQTT layer. Remove the line "
        "(TLS is the default) unless the broker and every node share a trusted link."
    )


def load_fleet(path: Path) -> FleetSpec:
    """Read and validate a fleet file; raises ProvisioningError naming the file and the field."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ProvisioningError(f"{path}: cannot read the fleet file ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise ProvisioningError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ProvisioningError(f"{path}: the fleet file must be a mapping (fabric, broker, agents, ...)")
    try:
        return FleetSpec.model_validate(data)
    except (ValidationError, ValueError) as error:
        raise ProvisioningError(f"{path}: invalid fleet file\n{_describe(error)}") from None


def _describe(error: ValidationError | ValueError) -> str:
    if not isinstance(error, ValidationError):
        return f"  {error}"
    lines = []
    for item in error.errors()[:10]:
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {location}: {item['msg']}")
    return "\n".join(lines)


def check_against_inventory(fleet: FleetSpec, inventory: Inventory) -> None:
    """Every host or group the fleet names must exist in the inventory."""
    sites = fleet.broker.sites.values()
    named = [*fleet.broker.hosts, *fleet.agents, *fleet.routers]
    named += [site.broker for site in sites] + [member for site in sites for member in site.members]
    unknown = sorted({name for name in named if name not in inventory.hosts and not inventory.is_group(name)})
    if unknown:
        raise ProvisioningError(f"the fleet file names hosts or groups the inventory does not have: {unknown}")
    check_sites(fleet, inventory)


def check_sites(fleet: FleetSpec, inventory: Inventory) -> None:
    """Site brokers are single hosts apart from the hub; a host or client lives at one site at most."""
    sites = fleet.broker.sites
    hubs = set(expand(inventory, fleet.broker.hosts))
    if fleet.broker.kind != "mosquitto" and (sites or len(hubs) > 1):
        raise ProvisioningError(
            "several brokers need broker.kind mosquitto: only mosquitto bridges brokers into one fabric"
        )
    site_of: dict[str, str] = {}
    for name, site in sites.items():
        if site.broker not in inventory.hosts:
            raise ProvisioningError(f"broker.sites.{name}.broker must be one inventory host, not {site.broker!r}")
        if site.broker in hubs:
            raise ProvisioningError(f"broker.sites.{name}.broker {site.broker!r} is also a hub (broker.hosts)")
        unknown = sorted(set(site.clients) - set(fleet.clients))
        if unknown:
            raise ProvisioningError(f"broker.sites.{name}.clients names clients not in `clients`: {unknown}")
        for member in [site.broker, *expand(inventory, site.members), *(f"client {c}" for c in site.clients)]:
            if site_of.setdefault(member, name) != name:
                raise ProvisioningError(f"{member} is at two sites: {site_of[member]} and {name}")


def expand(inventory: Inventory, names: tuple[str, ...]) -> list[str]:
    """Hosts named directly or through groups, in order, without duplicates."""
    hosts: list[str] = []
    for name in names:
        for host in [name] if name in inventory.hosts else inventory.members(name):
            if host not in hosts:
                hosts.append(host)
    return hosts


def agents_for(fleet: FleetSpec, inventory: Inventory, host: str) -> tuple[AgentConfig, ...]:
    """The agents of `host`: its own entry, else the last matching group entry in file order, else `all`."""
    if host in fleet.agents:
        return fleet.agents[host]
    groups = [name for name in fleet.agents if name != "all" and host in inventory.members(name)]
    if groups:
        return fleet.agents[groups[-1]]
    return fleet.agents.get("all", ())
