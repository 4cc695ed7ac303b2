"""The fleet plan: inventory + fleet file -> accounts, node configs and target paths (pure; no files, no secrets).

`plan_fleet` decides everything that does not need randomness: which hosts are nodes, their agent ids (explicit,
so the ACL can name their run topics), which nodes host a router, the broker URLs, and where files live on the
targets. `provisioning.render` adds the passwords and certificates and writes the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provisioning.acl import Account, client_account, node_account
from provisioning.errors import ProvisioningError
from provisioning.fleet import FleetSpec, agents_for, check_against_inventory, expand
from provisioning.inventory import Inventory
from provisioning.targets import needs_model_file, shipped_model_path
from shared.config import AgentConfig
from shared.errors import TopicError
from shared.topics import Topics, validate_id

HOST_PLACEHOLDER = "{host}"


@dataclass(frozen=True)
class TargetPaths:
    """Where things live on a target host, all under the install prefix ("" = the real root).

    A prefix may hold `{host}` (one prefix per board, for boards sharing a filesystem such as the multi-host
    test's namespaces): `for_host` fills it in for node.yaml; `for_ansible` makes it a per-host Jinja expression.
    """

    prefix: str = ""

    def for_host(self, host: str) -> TargetPaths:
        return TargetPaths(self.prefix.replace(HOST_PLACEHOLDER, host))

    def for_ansible(self) -> TargetPaths:
        return TargetPaths(self.prefix.replace(HOST_PLACEHOLDER, "{{ inventory_hostname }}"))

    @property
    def config_dir(self) -> str:
        return f"{self.prefix}/etc/symphony-edge"

    @property
    def node_config(self) -> str:
        return f"{self.config_dir}/node.yaml"

    @property
    def tls_dir(self) -> str:
        return f"{self.config_dir}/tls"

    @property
    def broker_dir(self) -> str:
        return f"{self.config_dir}/broker"

    @property
    def state_dir(self) -> str:
        return f"{self.prefix}/var/lib/symphony-edge"

    @property
    def models_dir(self) -> str:
        return f"{self.state_dir}/models"

    @property
    def artifacts_dir(self) -> str:
        return f"{self.prefix}/opt/symphony-edge/artifacts"

    @property
    def venv_dir(self) -> str:
        return f"{self.prefix}/opt/symphony-edge/venv"

    @property
    def mosquitto_config(self) -> str:
        return f"{self.prefix}/etc/mosquitto/mosquitto.conf"

    @property
    def mosquitto_persistence(self) -> str:
        return f"{self.prefix}/var/lib/mosquitto"


@dataclass(frozen=True)
class NodePlan:
    """One inventory host that runs `edge-agent start`: its agents, optional router, and account."""

    node_id: str
    agents: tuple[AgentConfig, ...]
    router_id: str | None
    account: Account


@dataclass(frozen=True)
class FleetPlan:
    fleet: FleetSpec
    paths: TargetPaths
    broker_hosts: tuple[str, ...]
    broker_urls: tuple[str, ...]
    broker_names: tuple[str, ...]
    nodes: tuple[NodePlan, ...]
    clients: tuple[Account, ...]

    @property
    def accounts(self) -> tuple[Account, ...]:
        return tuple(node.account for node in self.nodes) + self.clients


def plan_fleet(fleet: FleetSpec, inventory: Inventory) -> FleetPlan:
    """Decide nodes, agents, routers, accounts and broker URLs; raises ProvisioningError on an inconsistency."""
    check_against_inventory(fleet, inventory)
    topics = Topics(fleet.fabric)
    routers = set(expand(inventory, fleet.routers))
    nodes = []
    for host in inventory.hosts:
        agents = _with_agent_ids(host, agents_for(fleet, inventory, host))
        if agents or host in routers:
            _check_id(host, "inventory host name")
            router_id = host if host in routers else None
            account = node_account(topics, host, [agent.agent_id or "" for agent in agents], router_id)
            nodes.append(NodePlan(host, agents, router_id, account))
    clashes = sorted(set(fleet.clients) & {node.node_id for node in nodes})
    if clashes:
        raise ProvisioningError(f"client ids {clashes} are also node names; each account needs its own name")
    broker_hosts = tuple(expand(inventory, fleet.broker.hosts))
    scheme = "mqtts" if fleet.broker.tls else "mqtt"
    names = tuple(dict.fromkeys(name for host in broker_hosts for name in (inventory.address(host), host)))
    return FleetPlan(
        fleet=fleet,
        paths=TargetPaths(fleet.prefix),
        broker_hosts=broker_hosts,
        broker_urls=tuple(
            f"{scheme}://{_url_host(inventory.address(host))}:{fleet.broker.listen_port}" for host in broker_hosts
        ),
        broker_names=names,
        nodes=tuple(nodes),
        clients=tuple(client_account(topics, client) for client in fleet.clients),
    )


def _with_agent_ids(node_id: str, agents: tuple[AgentConfig, ...]) -> tuple[AgentConfig, ...]:
    """Give every agent the id the runtime would derive (see edge_agent.runtime.assembly.agent_profile)."""
    named = []
    for index, agent in enumerate(agents):
        default = f"{node_id}-{agent.preset or 'agent'}" + (f"-{index}" if index else "")
        named.append(agent if agent.agent_id else agent.model_copy(update={"agent_id": default}))
    ids = [agent.agent_id for agent in named]
    if len(set(ids)) != len(ids):
        raise ProvisioningError(f"host {node_id}: agent ids repeat: {ids}")
    for agent_id in ids:
        _check_id(agent_id or "", "agent id")
    return tuple(named)


def _check_id(value: str, what: str) -> None:
    try:
        validate_id(value, what)
    except TopicError as error:
        raise ProvisioningError(str(error)) from None


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def node_config(plan: FleetPlan, node: NodePlan, password: str) -> dict[str, Any]:
    """The node.yaml content for `node` (loads with shared.config.load_node_config on the target)."""
    paths = plan.paths.for_host(node.node_id)
    connection: dict[str, Any] = {
        "fabric": plan.fleet.fabric,
        "brokers": list(plan.broker_urls),
        "username": node.node_id,
        "password": password,
    }
    if plan.fleet.broker.tls:
        connection["tls"] = tls_settings(paths.tls_dir)
    config: dict[str, Any] = {
        "node_id": node.node_id,
        "connection": connection,
        "agents": [_agent_settings(agent, paths) for agent in node.agents],
        "state_dir": paths.state_dir,
    }
    if node.router_id is not None:
        config["router"] = {"router_id": node.router_id, "state_file": f"{paths.state_dir}/router-state.json"}
    return config


def _agent_settings(agent: AgentConfig, paths: TargetPaths) -> dict[str, Any]:
    """The agent's node.yaml entry; a model the control node ships is named by its path on the board."""
    settings: dict[str, Any] = agent.model_dump(mode="json", exclude_unset=True)
    if needs_model_file(agent):
        settings["model"] = shipped_model_path(paths.models_dir, agent.model)
    return settings


def client_config(plan: FleetPlan, client: Account, password: str, tls_dir: str | None) -> dict[str, Any]:
    """A config file for an application client (`edge-agent submit -c clients/<id>.yaml`)."""
    connection: dict[str, Any] = {
        "fabric": plan.fleet.fabric,
        "brokers": list(plan.broker_urls),
        "username": client.username,
        "password": password,
    }
    if tls_dir is not None:
        connection["tls"] = tls_settings(tls_dir)
    return {"node_id": client.username, "connection": connection}


def tls_settings(tls_dir: str) -> dict[str, str]:
    return {"ca_file": f"{tls_dir}/ca.crt", "cert_file": f"{tls_dir}/client.crt", "key_file": f"{tls_dir}/client.key"}
