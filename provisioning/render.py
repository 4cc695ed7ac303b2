"""Render a fleet into an output directory: node configs, credentials, ACLs, certificates, Ansible variables.

Output directory layout (every file mode 0600, every directory 0700; Ansible copies them to the targets):

    <out>/
      secrets.yaml                 every account's password; the source of truth, kept across renders
      ansible-vars.yml             extra variables for ansible/site.yml (prefix, paths, broker kind and hosts)
      broker/
        mosquitto.conf             mosquitto configuration (paths are the targets' paths) of the (first) hub
        hosts/<host>/mosquitto.conf   each broker host's configuration: a site broker's has its bridge to the hub
        passwd                     mosquitto password file ($7$ PBKDF2-SHA512, as mosquitto_passwd writes)
        acl                        mosquitto acl_file
        amqtt-passwd               embedded broker password file (argon2, read by amqtt's FileAuthPlugin)
        amqtt-acl.yaml             embedded broker topic ACL (read by broker.embedded.TopicACL.load)
        tls/ca.crt server.crt server.key          (broker.tls only)
        tls/bridge.crt bridge.key  the bridges' client certificate (broker.tls with several brokers)
      ca/ca.crt ca.key             the fleet's CA (broker.tls only; keep ca.key safe)
      nodes/<host>/node.yaml       the node's config, with its password (`edge-agent start -c`)
      nodes/<host>/tls/ca.crt client.crt client.key   (broker.tls only)
      clients/<id>.yaml            an application client's connection settings (`edge-agent submit -c`)
      clients/<id>/tls/...         (broker.tls only)
      operators/<id>.yaml          an operator's settings (`edge-agent status|top|trace|dashboard|doctor -c`)
      operators/<id>/tls/...       (broker.tls only)
      gateway/api-keys.yaml        the OpenAI gateway's API keys, one per client account (`edge-agent gateway
                                   --keys-file`); the keys themselves live in secrets.yaml (api_keys)

Re-rendering is idempotent: passwords come from secrets.yaml, password-file lines are kept while their hash still
verifies, certificates are kept while signed by the CA, covering the right names and not about to expire, and a
file is rewritten only when its content changes. Secrets are never printed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from broker.bridges import Bridge, BridgeTLS
from broker.mosquitto import MosquittoConfig, render_config
from provisioning.acl import amqtt_acl, mosquitto_acl
from provisioning.errors import ProvisioningError
from provisioning.fleet import load_fleet
from provisioning.inventory import load_inventory
from provisioning.passwords import (
    argon2_hash,
    argon2_verify,
    keep_or_hash,
    mosquitto_hash,
    mosquitto_verify,
    new_password,
    parse_password_file,
)
from provisioning.plan import BrokerPlan, FleetPlan, client_config, node_config, plan_fleet
from shared.files import write_atomic

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


@dataclass
class RenderReport:
    """What a render wrote (paths relative to the output directory); never holds a secret."""

    output: Path
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    clients: list[str] = field(default_factory=list)
    operators: list[str] = field(default_factory=list)


class _Writer:
    def __init__(self, output: Path) -> None:
        self.report = RenderReport(output)
        self.output = output

    def write(self, relative: str, content: str | bytes) -> Path:
        """Write `content` with mode 0600 (atomically, only when it differs) and return the path."""
        data = content.encode() if isinstance(content, str) else content
        path = self.output / relative
        _make_private_directory(path.parent, self.output)
        if path.exists() and path.read_bytes() == data:
            os.chmod(path, FILE_MODE)
            self.report.unchanged.append(relative)
            return path
        write_atomic(path, data, mode=FILE_MODE)
        self.report.changed.append(relative)
        return path

    def read(self, relative: str) -> str:
        path = self.output / relative
        return path.read_text() if path.exists() else ""


def _make_private_directory(directory: Path, top: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=DIRECTORY_MODE)
    for folder in [directory, *directory.parents]:
        if folder == top.parent:
            break
        os.chmod(folder, DIRECTORY_MODE)


def render(inventory_path: Path, fleet_path: Path, output: Path) -> RenderReport:
    """Load the inventory and fleet file, plan the fleet and render it into `output`."""
    plan = plan_fleet(load_fleet(fleet_path), load_inventory(inventory_path))
    return render_plan(plan, output)


def render_plan(plan: FleetPlan, output: Path) -> RenderReport:
    """Write every file of the layout above for `plan` into `output`."""
    output = output.resolve()
    writer = _Writer(output)
    passwords, api_keys = _passwords(writer, plan)
    _write_broker_files(writer, plan, passwords)
    from_tls = _write_certificates(writer, plan) if plan.fleet.broker.tls else None
    for node in plan.nodes:
        text = yaml.safe_dump(node_config(plan, node, passwords[node.node_id]), sort_keys=False)
        writer.write(f"nodes/{node.node_id}/node.yaml", text)
        writer.report.nodes.append(node.node_id)
    for client in plan.clients:
        tls_dir = str(output / "clients" / client.username / "tls") if from_tls else None
        text = yaml.safe_dump(client_config(plan, client, passwords[client.username], tls_dir), sort_keys=False)
        writer.write(f"clients/{client.username}.yaml", text)
        writer.report.clients.append(client.username)
    for operator in plan.operators:
        tls_dir = str(output / "operators" / operator.username / "tls") if from_tls else None
        settings = client_config(plan, operator, passwords[operator.username], tls_dir, role="operator")
        writer.write(f"operators/{operator.username}.yaml", yaml.safe_dump(settings, sort_keys=False))
        writer.report.operators.append(operator.username)
    if api_keys:
        keys = [{"key": key, "client": client, "password": passwords[client]} for client, key in api_keys.items()]
        header = "# symphony-edge gateway API keys -> client accounts (edge-agent gateway --keys-file)\n"
        writer.write("gateway/api-keys.yaml", header + yaml.safe_dump({"keys": keys}, sort_keys=False))
    writer.write("ansible-vars.yml", yaml.safe_dump(ansible_variables(plan, output), sort_keys=False))
    return writer.report


def _passwords(writer: _Writer, plan: FleetPlan) -> tuple[dict[str, str], dict[str, str]]:
    """Every account's password and every client's gateway API key: kept from secrets.yaml, new ones for new
    accounts; saved back."""
    try:
        stored = yaml.safe_load(writer.read("secrets.yaml")) or {}
    except yaml.YAMLError as error:
        raise ProvisioningError(f"{writer.output / 'secrets.yaml'}: not valid YAML: {error}") from None
    known = stored.get("passwords", {}) if isinstance(stored, dict) else {}
    passwords = {account.username: str(known.get(account.username) or new_password()) for account in plan.accounts}
    known_keys = stored.get("api_keys", {}) if isinstance(stored, dict) else {}
    api_keys = {c.username: str(known_keys.get(c.username) or f"sk-symphony-{new_password()}") for c in plan.clients}
    secrets = {"passwords": passwords, **({"api_keys": api_keys} if api_keys else {})}
    header = "# symphony-edge account passwords: keep this file secret (mode 0600)\n"
    writer.write("secrets.yaml", header + yaml.safe_dump(secrets, sort_keys=True))
    return passwords, api_keys


def _write_broker_files(writer: _Writer, plan: FleetPlan, passwords: dict[str, str]) -> None:
    existing = parse_password_file(writer.read("broker/passwd"))
    passwd = writer.write("broker/passwd", keep_or_hash(passwords, existing, mosquitto_hash, mosquitto_verify))
    existing = parse_password_file(writer.read("broker/amqtt-passwd"))
    writer.write("broker/amqtt-passwd", keep_or_hash(passwords, existing, argon2_hash, argon2_verify))
    acl = writer.write("broker/acl", mosquitto_acl(plan.accounts))
    header = "# symphony-edge topic ACL for the embedded broker (edge-agent broker --acl-file)\n"
    writer.write("broker/amqtt-acl.yaml", header + yaml.safe_dump(amqtt_acl(plan.accounts), sort_keys=False))
    tls = writer.output / "broker" / "tls"
    for index, broker in enumerate(plan.brokers):
        text = _mosquitto_conf(plan, passwd, acl, tls, broker, passwords)
        writer.write(f"broker/hosts/{broker.host}/mosquitto.conf", text)
        if index == 0:
            writer.write("broker/mosquitto.conf", text)


def _bridges(plan: FleetPlan, broker: BrokerPlan, passwords: dict[str, str]) -> tuple[Bridge, ...]:
    """The bridge of a site broker (or a failover hub) to the first hub; site bridges fail over along the hubs."""
    if broker.bridge_account is None:
        return ()
    hubs = [hub for hub in plan.brokers if hub.site is None]
    targets = hubs[:1] if broker.site is None else hubs
    target = plan.paths.for_ansible().broker_dir
    tls = BridgeTLS(Path(f"{target}/tls/ca.crt"), Path(f"{target}/tls/bridge.crt"), Path(f"{target}/tls/bridge.key"))
    return (
        Bridge(
            name=f"symphony-{plan.fleet.fabric}-{broker.bridge_account.username}",
            addresses=tuple((hub.address, hub.port) for hub in targets),
            topics=broker.bridge_topics,
            username=broker.bridge_account.username,
            password=passwords[broker.bridge_account.username],
            tls=tls if plan.fleet.broker.tls else None,
        ),
    )


def _mosquitto_conf(
    plan: FleetPlan, passwd: Path, acl: Path, tls: Path, host: BrokerPlan, passwords: dict[str, str]
) -> str:
    """render_config checks that the password file exists, so render with the local files, then point the
    paths at where Ansible puts those files on the broker host."""
    broker = plan.fleet.broker
    local_tls = {name: tls / name for name in ("ca.crt", "server.crt", "server.key")} if broker.tls else {}
    config = MosquittoConfig(
        host=broker.bind,
        port=host.port,
        password_file=passwd,
        acl_file=acl,
        ca_file=local_tls.get("ca.crt"),
        cert_file=local_tls.get("server.crt"),
        key_file=local_tls.get("server.key"),
        require_certificate=broker.tls,
        persistence_dir=Path(plan.paths.for_ansible().mosquitto_persistence),
        bridges=_bridges(plan, host, passwords),
    )
    text = render_config(config)
    target = plan.paths.for_ansible().broker_dir
    for local, remote in [(passwd, f"{target}/passwd"), (acl, f"{target}/acl")] + [
        (path, f"{target}/tls/{name}") for name, path in local_tls.items()
    ]:
        text = text.replace(f" {local}\n", f" {remote}\n")
    return text


def _write_certificates(writer: _Writer, plan: FleetPlan) -> bool:
    from provisioning.certificates import KeyPair, issue, new_ca, still_good

    def load(stem: str) -> KeyPair | None:
        certificate, key = writer.output / f"{stem}.crt", writer.output / f"{stem}.key"
        return KeyPair(certificate.read_bytes(), key.read_bytes()) if certificate.exists() and key.exists() else None

    def save(stem: str, pair: KeyPair) -> None:
        writer.write(f"{stem}.crt", pair.certificate)
        writer.write(f"{stem}.key", pair.key)

    ca = load("ca/ca") or new_ca(f"symphony-edge {plan.fleet.fabric} CA")
    save("ca/ca", ca)
    leaves: list[tuple[str, str, tuple[str, ...], bool]] = [("broker/tls/server", "broker", plan.broker_names, True)]
    if any(broker.bridge_account for broker in plan.brokers):
        leaves.append(("broker/tls/bridge", "bridge", (), False))
    leaves += [(f"nodes/{node.node_id}/tls/client", node.node_id, (), False) for node in plan.nodes]
    leaves += [(f"clients/{client.username}/tls/client", client.username, (), False) for client in plan.clients]
    leaves += [(f"operators/{op.username}/tls/client", op.username, (), False) for op in plan.operators]
    for stem, common_name, names, server in leaves:
        current = load(stem)
        keep = current is not None and still_good(current, ca, names)
        save(stem, current if keep and current is not None else issue(ca, common_name, names, server=server))
        writer.write(str(Path(stem).parent / "ca.crt"), ca.certificate)
    return True


def ansible_variables(plan: FleetPlan, output: Path) -> dict[str, Any]:
    """Extra variables for ansible/site.yml (`-e @ansible-vars.yml`); paths come from one place, here."""
    paths = plan.paths.for_ansible()
    return {
        "symphony_render_dir": str(output),
        "symphony_prefix": paths.prefix,
        "symphony_fabric": plan.fleet.fabric,
        "symphony_config_dir": paths.config_dir,
        "symphony_state_dir": paths.state_dir,
        "symphony_venv_dir": paths.venv_dir,
        "symphony_artifacts_dir": paths.artifacts_dir,
        "symphony_models_dir": paths.models_dir,
        "symphony_broker_dir": paths.broker_dir,
        "symphony_broker_kind": plan.fleet.broker.kind,
        "symphony_broker_hosts": list(plan.broker_hosts),
        "symphony_broker_bind": plan.fleet.broker.bind,
        "symphony_broker_port": plan.fleet.broker.listen_port,
        "symphony_broker_tls": plan.fleet.broker.tls,
        "symphony_node_hosts": [node.node_id for node in plan.nodes],
        "symphony_router_hosts": [node.node_id for node in plan.nodes if node.router_id is not None],
        "symphony_agent_hosts": [node.node_id for node in plan.nodes if node.agents],
        "symphony_mosquitto_config_file": paths.mosquitto_config,
        "symphony_mosquitto_persistence_dir": paths.mosquitto_persistence,
    }
