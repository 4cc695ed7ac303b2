"""The fleet plan: inventory + fleet file -> accounts, node configs and target paths (pure; no files, no secrets).

`plan_fleet` decides everything that does not need randomness: which hosts are nodes, their agent ids (explicit,
so the ACL can name their run topics), which nodes host a router, the broker URLs, and where files live on the
targets. `provisioning.render` adds the passwords and certificates and writes the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.bridges import ALL_ROLES, BridgeTopic, Role, SummarisedSite, bridge_topics, summarised_bridge_topics
from provisioning.acl import Account, bridge_account, client_account, node_account, operator_account
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
    address: str = ""  # where peers reach it (its inventory address): its model server listens there


@dataclass(frozen=True)
class BrokerPlan:
    """One broker host: where it listens, and (site brokers and failover hubs) its bridge to the first hub."""

    host: str
    address: str
    port: int
    site: str | None = None  # None: a hub
    bridge_topics: tuple[BridgeTopic, ...] = ()
    bridge_account: Account | None = None

    def url(self, scheme: str) -> str:
        return f"{scheme}://{_url_host(self.address)}:{self.port}"


@dataclass(frozen=True)
class FleetPlan:
    fleet: FleetSpec
    paths: TargetPaths
    broker_hosts: tuple[str, ...]
    broker_urls: tuple[str, ...]
    broker_names: tuple[str, ...]
    nodes: tuple[NodePlan, ...]
    clients: tuple[Account, ...]
    operators: tuple[Account, ...] = ()  # an operator that is also a client is here only (one account)
    brokers: tuple[BrokerPlan, ...] = ()
    site_of: dict[str, str] | None = None  # node id or client id -> its site (absent: at the hub)

    @property
    def accounts(self) -> tuple[Account, ...]:
        bridges = tuple(broker.bridge_account for broker in self.brokers if broker.bridge_account is not None)
        return tuple(node.account for node in self.nodes) + self.clients + self.operators + bridges

    @property
    def scheme(self) -> str:
        return "mqtts" if self.fleet.broker.tls else "mqtt"

    def urls_for(self, member: str) -> list[str]:
        """The broker list of a node or client: its site broker first, then the hub(s)."""
        site = (self.site_of or {}).get(member)
        local = [broker.url(self.scheme) for broker in self.brokers if site is not None and broker.site == site]
        return local + list(self.broker_urls)


def plan_fleet(fleet: FleetSpec, inventory: Inventory) -> FleetPlan:
    """Decide nodes, agents, routers, accounts and broker URLs; raises ProvisioningError on an inconsistency."""
    check_against_inventory(fleet, inventory)
    topics = Topics(fleet.fabric)
    routers = set(expand(inventory, fleet.routers))
    discovery = fleet.home_assistant.discovery_prefix if fleet.home_assistant else None
    site_of = _sites_of_members(fleet, inventory)
    summaries = fleet.broker.wan == "summaries"
    nodes = []
    for host in inventory.hosts:
        agents = _with_agent_ids(host, agents_for(fleet, inventory, host))
        if agents or host in routers:
            _check_id(host, "inventory host name")
            router_id = host if host in routers else None
            agent_ids = [agent.agent_id or "" for agent in agents]
            account = node_account(topics, host, agent_ids, router_id, discovery, site_of.get(host), summaries)
            nodes.append(NodePlan(host, agents, router_id, account, inventory.address(host)))
    clashes = sorted(set(fleet.clients + fleet.operators) & {node.node_id for node in nodes})
    if clashes:
        raise ProvisioningError(
            f"client or operator ids {clashes} are also node names; each account needs its own name"
        )
    clients = tuple(client_account(topics, client) for client in fleet.clients if client not in fleet.operators)
    operators = tuple(
        operator_account(
            topics,
            operator,
            also_client=operator in fleet.clients,
            home_assistant_prefix=discovery,
            summaries=summaries,
        )
        for operator in dict.fromkeys(fleet.operators)
    )
    brokers = _plan_brokers(fleet, inventory, topics, nodes, site_of)
    bridges = [broker.bridge_account.username for broker in brokers if broker.bridge_account]
    others = [*(node.account for node in nodes), *clients, *operators]
    reserved = sorted(set(bridges) & {account.username for account in others})
    if reserved or len(set(bridges)) < len(bridges):
        raise ProvisioningError(
            f"bridge account names {sorted(bridges)} clash with each other or with node or client names "
            f"{reserved}; rename those sites, nodes or clients"
        )
    hubs = [broker for broker in brokers if broker.site is None]
    all_hosts = [broker.host for broker in brokers]
    names = tuple(dict.fromkeys(name for host in all_hosts for name in (inventory.address(host), host)))
    return FleetPlan(
        fleet=fleet,
        paths=TargetPaths(fleet.prefix),
        broker_hosts=tuple(all_hosts),
        broker_urls=tuple(broker.url("mqtts" if fleet.broker.tls else "mqtt") for broker in hubs),
        broker_names=names,
        nodes=tuple(nodes),
        clients=clients,
        operators=operators,
        brokers=tuple(brokers),
        site_of=site_of,
    )


def _sites_of_members(fleet: FleetSpec, inventory: Inventory) -> dict[str, str]:
    site_of: dict[str, str] = {}
    for name, site in fleet.broker.sites.items():
        for member in [site.broker, *expand(inventory, site.members), *site.clients]:
            site_of[member] = name
    return site_of


def _roles(nodes: list[NodePlan], clients: tuple[str, ...]) -> set[Role]:
    roles: set[Role] = {"client"} if clients else set()
    for node in nodes:
        roles.add("node")
        if node.agents:
            roles.add("agent")
        if node.router_id is not None:
            roles.add("router")
    return roles


def _plan_brokers(
    fleet: FleetSpec, inventory: Inventory, topics: Topics, nodes: list[NodePlan], site_of: dict[str, str]
) -> list[BrokerPlan]:
    """Hubs first (the first one is the bridges' target; later ones bridge every topic both ways, since anything
    may connect to them), then one broker per site, bridging what flows between the site and the rest."""

    def port(host: str) -> int:
        value = inventory.hosts.get(host, {}).get("broker_port") or fleet.broker.listen_port
        if not str(value).isdigit() or not 1 <= int(value) <= 65535:
            raise ProvisioningError(f"inventory host {host}: broker_port must be a port number, not {value!r}")
        return int(value)

    def where(site: str | None) -> set[Role]:
        return _roles(
            [node for node in nodes if site_of.get(node.node_id) == site],
            tuple(client for client in fleet.clients if site_of.get(client) == site),
        )

    brokers = []
    for index, host in enumerate(expand(inventory, fleet.broker.hosts)):
        if index == 0:
            brokers.append(BrokerPlan(host, inventory.address(host), port(host)))
            continue
        bridged = bridge_topics(topics, ALL_ROLES, ALL_ROLES)
        account = bridge_account(topics, f"hub-{index}", bridged)
        brokers.append(BrokerPlan(host, inventory.address(host), port(host), None, bridged, account))
    summarised = _summarised_sites(fleet, nodes, site_of)
    for name, site in fleet.broker.sites.items():
        elsewhere = where(None).union(*(where(other) for other in fleet.broker.sites if other != name))
        if name in summarised:  # its router is an agent too: the site agent, for routers elsewhere
            layout = _summarised_layout(name, summarised, nodes, site_of)
            bridged = summarised_bridge_topics(topics, where(name) | {"agent"}, elsewhere, layout)
        else:
            bridged = bridge_topics(topics, where(name), elsewhere)
        account = bridge_account(topics, name, bridged)
        brokers.append(
            BrokerPlan(site.broker, inventory.address(site.broker), port(site.broker), name, bridged, account)
        )
    return brokers


def _summarised_sites(fleet: FleetSpec, nodes: list[NodePlan], site_of: dict[str, str]) -> set[str]:
    """With `wan: summaries`, the sites that host a router (it summarises the site)."""
    if fleet.broker.wan != "summaries":
        return set()
    return {site_of[node.node_id] for node in nodes if node.router_id is not None and node.node_id in site_of}


def _summarised_layout(
    site: str, summarised: set[str], nodes: list[NodePlan], site_of: dict[str, str]
) -> SummarisedSite:
    here = [node for node in nodes if site_of.get(node.node_id) == site]
    elsewhere = [node for node in nodes if site_of.get(node.node_id) != site]
    unsummarised = [node for node in elsewhere if site_of.get(node.node_id) not in summarised]
    return SummarisedSite(
        site=site,
        other_sites=tuple(sorted(summarised - {site})),
        routers_here=tuple(node.router_id for node in here if node.router_id is not None),
        routers_elsewhere=tuple(node.router_id for node in elsewhere if node.router_id is not None),
        agents_elsewhere=tuple(agent.agent_id or "" for node in unsummarised for agent in node.agents),
        nodes_elsewhere=bool(unsummarised),
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
        "brokers": plan.urls_for(node.node_id),
        "username": node.node_id,
        "password": password,
    }
    site = (plan.site_of or {}).get(node.node_id)
    if site is not None:
        connection["site"] = site
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
        if plan.fleet.broker.wan == "summaries":
            config["router"]["site_summaries"] = True
        config["router"].update(tenancy_settings(plan.fleet))
    if plan.fleet.home_assistant is not None:
        config["home_assistant"] = plan.fleet.home_assistant.model_dump(mode="json")
    servers = plan.fleet.model_servers
    if servers is not None and node.agents:
        address = node.address or node.node_id
        config["model_server"] = {
            # its inventory address when the inventory names one; a bare host name may not resolve on the board
            "host": address if node.address != node.node_id else "0.0.0.0",
            "port": servers.port,
            "strict_port": servers.strict_port,
            "advertise": address,
            "max_uploads": servers.max_uploads,
        }
    return config


def tenancy_settings(fleet: FleetSpec) -> dict[str, Any]:
    """The router settings of the fleet's tenancy: teachers, the deadline cap, per-account caps."""
    settings: dict[str, Any] = {
        "teachers": list(fleet.teachers),
        "max_deadline_s": fleet.max_deadline_s,
        "limits": fleet.limits.model_dump(exclude_none=True),
    }
    if fleet.account_limits:
        settings["account_limits"] = {
            account: limits.model_dump(exclude_none=True) for account, limits in fleet.account_limits.items()
        }
    return settings


def _agent_settings(agent: AgentConfig, paths: TargetPaths) -> dict[str, Any]:
    """The agent's node.yaml entry; a model the control node ships is named by its path on the board."""
    settings: dict[str, Any] = agent.model_dump(mode="json", exclude_unset=True)
    if needs_model_file(agent):
        settings["model"] = shipped_model_path(paths.models_dir, agent.model)
    return settings


def client_config(
    plan: FleetPlan, client: Account, password: str, tls_dir: str | None, role: str = "client"
) -> dict[str, Any]:
    """A config file for an application client (`edge-agent submit -c clients/<id>.yaml`) or an operator
    (`edge-agent status|top|trace|dashboard|doctor -c operators/<id>.yaml`)."""
    connection: dict[str, Any] = {
        "fabric": plan.fleet.fabric,
        "brokers": plan.urls_for(client.username),
        "username": client.username,
        "password": password,
    }
    site = (plan.site_of or {}).get(client.username)
    if site is not None:
        connection["site"] = site
    if tls_dir is not None:
        connection["tls"] = tls_settings(tls_dir)
    return {"node_id": client.username, "role": role, "connection": connection}


def tls_settings(tls_dir: str) -> dict[str, str]:
    return {"ca_file": f"{tls_dir}/ca.crt", "cert_file": f"{tls_dir}/client.crt", "key_file": f"{tls_dir}/client.key"}
