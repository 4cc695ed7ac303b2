"""Node configuration: one YAML file per node, with environment overrides.

A node file names the fabric, how to reach the broker(s), the agents the node hosts and optionally a router
and an embedded broker. `load_node_config` raises `ConfigError` naming the file and the field on any mistake.

Environment overrides (applied after the file, before validation; read by pydantic-settings, see
`EnvironmentOverrides`): SYMPHONY_EDGE_NODE_ID, SYMPHONY_EDGE_FABRIC, SYMPHONY_EDGE_BROKERS (comma-separated URLs),
SYMPHONY_EDGE_USERNAME, SYMPHONY_EDGE_PASSWORD, SYMPHONY_EDGE_STATE_DIR, SYMPHONY_EDGE_SITE. Explicit (CLI)
overrides win over the environment, the environment over the file.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from shared.errors import ConfigError
from shared.topics import validate_id

Id = Annotated[str, AfterValidator(validate_id)]
DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
ENVIRONMENT_PREFIX = "SYMPHONY_EDGE_"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerURL(StrictModel):
    """A parsed ``mqtt://host:port`` or ``mqtts://host:port`` address (credentials never live here)."""

    scheme: Literal["mqtt", "mqtts"]
    host: str
    port: int = Field(ge=1, le=65535)

    @classmethod
    def parse(cls, url: str) -> BrokerURL:
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"broker URL {url!r} must start with mqtt:// or mqtts://")
        if parts.username or parts.password:
            raise ValueError("put broker credentials in username/password, not in the URL")
        scheme: Literal["mqtt", "mqtts"] = "mqtts" if parts.scheme in ("mqtts", "ssl") else "mqtt"
        if not parts.hostname:
            raise ValueError(f"broker URL {url!r} has no host")
        return cls(scheme=scheme, host=parts.hostname, port=parts.port or (8883 if scheme == "mqtts" else 1883))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


class TLSSettings(StrictModel):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False


class ConnectionSettings(StrictModel):
    """How any component reaches the fabric."""

    fabric: Id = "default"
    brokers: tuple[str, ...] = (DEFAULT_BROKER,)
    username: str | None = None
    password: SecretStr | None = None
    tls: TLSSettings | None = None
    keepalive_s: int = Field(default=10, ge=2, le=3600)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    # While connected to a broker other than the first: probe the first this often (a TCP connect) and move
    # back to it once it answers (0: stay where we are).
    fail_back_probe_s: float = Field(default=5.0, ge=0, le=3600)
    # The highest QoS a subscription asks for. 0 on a NATS cluster: there every QoS 1 subscription is a replicated
    # JetStream consumer whose leader must be re-elected when a server dies (the survivors deliver nothing to it
    # for 10-40 s), while a QoS 0 subscription is a plain NATS one that keeps delivering. With clean sessions a
    # QoS 1 subscription adds little anyway: what is in flight when a connection drops is lost with the session,
    # and the fabric asks again (routers re-ask runs, clients resend tasks).
    subscribe_qos: int = Field(default=1, ge=0, le=1)
    # Read what the socket holds in one recv instead of paho's recv per header byte (fewer system calls per
    # message); false: paho's own reads.
    buffered_reads: bool = True
    # The largest payload this component sends or accepts (larger incoming ones are dropped before decoding);
    # brokers the kit renders refuse larger messages too (`message_size_limit`).
    max_payload_bytes: int = Field(default=1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    # The site this component lives at (the fleet file's `broker.sites`; None: the one default site). Nodes
    # announce it in their beacon, clients in their tasks, routers in their presence: routers prefer agents at
    # the submitter's site and cross a WAN link only when they must (router/locality.py, docs/sites.md).
    site: Id | None = None

    @field_validator("brokers")
    @classmethod
    def _check_brokers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one broker URL is needed")
        schemes = {BrokerURL.parse(url).scheme for url in value}
        if len(schemes) > 1:
            raise ValueError("all broker URLs must use the same scheme (mqtt:// or mqtts://)")
        return value

    def broker_urls(self) -> list[BrokerURL]:
        return [BrokerURL.parse(url) for url in self.brokers]


class AgentConfig(StrictModel):
    """One agent on a node: a persona preset plus overrides, a backend and a model."""

    agent_id: Id | None = None
    preset: str | None = None
    backend: str = "auto"
    model: str = "default"
    capabilities: tuple[str, ...] | None = None
    system_prompt: str | None = None
    description: str = ""
    max_tokens: int = Field(default=256, ge=1, le=8192)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    max_in_flight: int = Field(default=1, ge=1, le=64)
    queue_size: int = Field(default=16, ge=0, le=10_000)
    threads: int | None = Field(default=None, ge=1, le=256)
    context_length: int = Field(default=2048, ge=256, le=131_072)
    backend_settings: dict[str, Any] = Field(default_factory=dict)
    cost_per_1k_tokens: float | None = Field(default=None, ge=0.0)  # None: the backend's default price


class AccountLimits(StrictModel):
    """Caps on what one client account may ask of the router (None: no cap beyond the wire schema's own)."""

    tasks: int | None = Field(default=None, ge=1)  # tasks of the account in flight at once (else `rate_limited`)
    cot_count: int | None = Field(default=None, ge=1, le=9)  # a larger cot_count is refused (`too_large`)
    plan_k: int | None = Field(default=None, ge=1, le=8)  # a larger plan_k is refused (`too_large`)
    steps: int | None = Field(default=None, ge=1, le=8)  # plans are cut to this many steps


class RouterSettings(StrictModel):
    router_id: Id | None = None
    state_file: Path | None = None
    save_interval_s: float = Field(default=30.0, gt=0)
    stale_after_s: float = Field(default=30.0, gt=0)
    seed: int = 0
    policy: Literal["linucb", "cost_aware"] = "linucb"  # cost_aware: router/cost_policy.py
    rebirth_on_connect: bool = True  # ask nodes to republish beacons on connect (brokers without retained)
    share_group: Id | None = None  # routers of a group share task/submit ($share/...; mosquitto, EMQX, HiveMQ)
    answer_retention_s: float = Field(default=600.0, gt=0)  # how long an answered task id is replayed (ledger)
    ledger_size: int = Field(default=20_000, ge=16)  # ledger entries kept at most (claims and answers)
    # Sites (docs/sites.md). `site_summaries`: read the sites' summaries (and route to a site by its summary); a
    # router with a site also publishes its site's summary every `summary_interval_s` (and on change) and serves
    # the site's agent (`site:{site}`) for routers elsewhere. Cross a WAN link when the local agents are loaded
    # past `local_load_threshold`, or when the reward elsewhere beats the best local one by more than `link_cost`.
    site_summaries: bool = False
    summary_interval_s: float = Field(default=5.0, gt=0.0, le=3600.0)
    local_load_threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    link_cost: float = Field(default=0.25, ge=0.0, le=10.0)
    # Tenancy (docs/tenancy.md): who may teach the router, the longest deadline a task gets, per-account caps.
    teachers: tuple[Id, ...] = ()  # accounts whose gold answers, benchmark labels and requirements teach
    max_deadline_s: float = Field(default=600.0, gt=0, le=3600.0)  # a task's deadline_s is capped to this
    limits: AccountLimits = AccountLimits()  # every account's caps
    account_limits: dict[Id, AccountLimits] = Field(default_factory=dict)  # one account's caps instead


class EmbeddedBrokerSettings(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=0, le=65535)
    password_file: Path | None = None
    acl_file: Path | None = None
    allow_anonymous: bool = False
    # what one peer may cost the broker (broker.limits): largest payload, seconds to send CONNECT, connections one
    # address may hold before authenticating
    message_size_limit: int = Field(default=1024 * 1024, ge=1024)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    max_unauthenticated: int = Field(default=32, ge=1)


class HomeAssistantSettings(StrictModel):
    discovery_prefix: Id = "homeassistant"


class ModelServerSettings(StrictModel):
    """Serve the models this node holds to its peers over HTTP (models spread over the LAN, not from one host)."""

    host: str = "0.0.0.0"
    port: int = Field(default=8765, ge=0, le=65535)  # 0: any free port
    # when `port` is in use (another node on this host), serve on any free port (the beacon carries the address
    # bound); strict: do not serve models at all then (a firewall open for this port only)
    strict_port: bool = False
    advertise: str | None = None  # the host name or address peers use (default: this machine's host name)
    max_uploads: int = Field(default=4, ge=1, le=64)


class NodeConfig(StrictModel):
    """Everything `edge-agent start` needs on one board."""

    node_id: Id = Field(default_factory=lambda: _default_node_id())
    role: Literal["node", "client", "operator"] = "node"  # rendered client/operator files say which they are
    connection: ConnectionSettings = ConnectionSettings()
    agents: tuple[AgentConfig, ...] = ()
    state_dir: Path = Path("~/.local/state/symphony-edge")
    state_interval_s: float = Field(default=5.0, gt=0)
    router: RouterSettings | None = None
    broker: EmbeddedBrokerSettings | None = None
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    home_assistant: HomeAssistantSettings | None = None  # opt-in Home Assistant MQTT discovery
    model_server: ModelServerSettings | None = None  # serve held models to peers (fleet model distribution)
    drain_timeout_s: float = Field(default=120.0, gt=0)  # how long a swap waits for runs in flight

    def resolved_state_dir(self) -> Path:
        return self.state_dir.expanduser()


def _default_node_id() -> str:
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname()) or "node"
    return name[:64]


class EnvironmentOverrides(BaseSettings):
    """The node settings the environment may override, one `SYMPHONY_EDGE_<FIELD>` variable each.

    The values stay as given here (strings, the brokers split at commas): the node config validates them together
    with the file's, and an error names the variable a bad value came from.
    """

    model_config = SettingsConfigDict(env_prefix=ENVIRONMENT_PREFIX, extra="ignore", frozen=True)

    node_id: str | None = None
    state_dir: str | None = None
    fabric: str | None = None
    brokers: Annotated[list[str] | None, NoDecode] = None
    username: str | None = None
    password: str | None = None
    site: str | None = None

    @field_validator("brokers", mode="before")
    @classmethod
    def _split_brokers(cls, value: Any) -> Any:
        if isinstance(value, str):  # an empty variable leaves the brokers alone; "," alone names none (an error)
            return [url.strip() for url in value.split(",") if url.strip()] if value else None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings,)  # the process environment only: no .env file, no secrets directory

    def dotted(self) -> dict[str, tuple[str, Any]]:
        """Each variable that is set, as {dotted config key: (variable name, value)}."""
        return {
            (f"connection.{name}" if name in ConnectionSettings.model_fields else name): (
                f"{ENVIRONMENT_PREFIX}{name.upper()}",
                value,
            )
            for name, value in self.model_dump(exclude_none=True).items()
        }


def load_node_config(path: Path | None, *, environment: bool = True, **overrides: Any) -> NodeConfig:
    """Load a node config from YAML (or defaults when `path` is None), apply environment and CLI overrides.

    `environment=False` reads the file as it is (a tool reading another node's file).
    """
    data: dict[str, Any] = _read_yaml(path) if path is not None else {}
    from_environment = EnvironmentOverrides().dotted() if environment else {}
    explicit = {key: value for key, value in overrides.items() if value is not None}
    for key, (_, value) in from_environment.items():
        _set_dotted(data, key, value)
    for key, value in explicit.items():
        _set_dotted(data, key, value)
    try:
        return NodeConfig.model_validate(data)
    except ValidationError as error:
        variables = {key: variable for key, (variable, _) in from_environment.items() if key not in explicit}
        raise ConfigError(_describe(error, path, variables)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config file ({error.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    return data


def _set_dotted(data: dict[str, Any], dotted_key: str, value: Any) -> None:
    *parents, last = dotted_key.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[last] = value


def _describe(error: ValidationError, path: Path | None, variables: Mapping[str, str]) -> str:
    """The error as lines naming each bad field, and the environment variable its value came from if one did."""
    source = str(path) if path is not None else "configuration"
    lines = [f"{source}: invalid configuration"]
    for item in error.errors()[:10]:
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        variable = next((name for key, name in variables.items() if f"{location}.".startswith(f"{key}.")), None)
        origin = f" (from {variable})" if variable else ""
        lines.append(f"  {location}{origin}: {item['msg']}")
    return "\n".join(lines)
