"""Rendering a fleet: node configs that load, ACLs, password hashes, kept secrets, private files."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.embedded import TopicACL
from provisioning.errors import ProvisioningError
from provisioning.passwords import argon2_verify, mosquitto_verify, parse_password_file
from provisioning.render import render
from shared.config import load_node_config

INVENTORY = """
[brokers]
hub ansible_host=10.0.0.1

[boards]
node-a ansible_host=10.0.0.2
node-b

[macs]
mac-1
"""

FLEET: dict[str, Any] = {
    "fabric": "lab",
    "broker": {"kind": "mosquitto", "hosts": ["brokers"], "tls": False},
    "agents": {"boards": [{"preset": "writer", "backend": "echo"}, {"preset": "math"}], "mac-1": [{"backend": "mlx"}]},
    "routers": ["hub"],
    "clients": ["alice", "carol"],
    "operators": ["ops", "carol"],  # carol operates and submits
}


def write_fleet(directory: Path, fleet: dict[str, Any] = FLEET, inventory: str = INVENTORY) -> tuple[Path, Path]:
    (directory / "inventory.ini").write_text(inventory)
    (directory / "fleet.yml").write_text(yaml.safe_dump(fleet))
    return directory / "inventory.ini", directory / "fleet.yml"


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    render(*write_fleet(tmp_path), tmp_path / "out")
    return tmp_path / "out"


def secrets_of(out: Path) -> dict[str, str]:
    passwords: dict[str, str] = yaml.safe_load((out / "secrets.yaml").read_text())["passwords"]
    return passwords


def test_every_node_config_loads_with_its_agents_router_and_credentials(rendered: Path) -> None:
    passwords = secrets_of(rendered)
    node_a = load_node_config(rendered / "nodes/node-a/node.yaml", environment=False)
    assert node_a.node_id == "node-a"
    assert [agent.agent_id for agent in node_a.agents] == ["node-a-writer", "node-a-math-1"]
    assert node_a.connection.fabric == "lab"
    assert node_a.connection.brokers == ("mqtt://10.0.0.1:1883",)
    assert node_a.connection.username == "node-a"
    assert node_a.connection.password is not None
    assert node_a.connection.password.get_secret_value() == passwords["node-a"]
    assert node_a.router is None
    hub = load_node_config(rendered / "nodes/hub/node.yaml", environment=False)
    assert hub.router is not None and hub.router.router_id == "hub" and hub.agents == ()
    assert [
        agent.backend for agent in load_node_config(rendered / "nodes/mac-1/node.yaml", environment=False).agents
    ] == ["mlx"]
    client = load_node_config(rendered / "clients/alice.yaml", environment=False)
    assert client.connection.username == "alice"


def test_every_account_has_a_distinct_random_password(rendered: Path) -> None:
    passwords = secrets_of(rendered)
    assert sorted(passwords) == ["alice", "carol", "hub", "mac-1", "node-a", "node-b", "ops"]
    assert len(set(passwords.values())) == len(passwords)
    assert all(len(password) >= 32 for password in passwords.values())


def test_password_files_verify_each_password_and_reject_others(rendered: Path) -> None:
    passwords = secrets_of(rendered)
    mosquitto = parse_password_file((rendered / "broker/passwd").read_text())
    amqtt = parse_password_file((rendered / "broker/amqtt-passwd").read_text())
    assert set(mosquitto) == set(amqtt) == set(passwords)
    for user, password in passwords.items():
        assert mosquitto[user].startswith("$7$101$") and mosquitto_verify(password, mosquitto[user])
        assert amqtt[user].startswith("$argon2id$") and argon2_verify(password, amqtt[user])
        assert not mosquitto_verify(password + "x", mosquitto[user])
        assert not argon2_verify(password + "x", amqtt[user])


def test_amqtt_acl_gives_nodes_routers_and_clients_their_topics_only(rendered: Path) -> None:
    acl = TopicACL.load(rendered / "broker/amqtt-acl.yaml")
    p = "symphony/lab"
    assert acl.publish["node-a"] == [
        f"{p}/beacon/node-a",
        f"{p}/state/node-a",
        f"{p}/router/+/inbox",
        f"{p}/router/+/bids",
    ]
    assert set(acl.subscribe["node-a"]) == {
        f"{p}/beacon/node-a",
        f"{p}/state/node-a",
        f"{p}/bid/request",
        f"{p}/rebirth",
        f"{p}/desired/node-a",  # its desired state and operator orders (fleet operations)
        f"{p}/control/node-a",
        f"{p}/beacon/+",  # which peers serve the models it fetches
        f"{p}/agent/node-a-writer/run",
        f"{p}/agent/node-a-math-1/run",
    }
    assert {f"{p}/agent/+/run", f"{p}/reply/+", f"{p}/task/+/+/events", f"{p}/router/hub"} <= set(acl.publish["hub"])
    assert {f"{p}/beacon/+", f"{p}/state/+", f"{p}/task/submit/+", f"{p}/router/hub/inbox"} <= set(acl.subscribe["hub"])
    assert acl.publish["alice"] == [f"{p}/task/submit/alice"]  # the account is in the topic
    assert acl.subscribe["alice"] == [f"{p}/reply/alice", f"{p}/task/alice/+/events"]  # its own tasks' events only


def test_operators_read_the_whole_fabric_and_submit_only_when_also_clients(rendered: Path) -> None:
    acl = TopicACL.load(rendered / "broker/amqtt-acl.yaml")
    p = "symphony/lab"
    fabric = [f"{p}/beacon/+", f"{p}/state/+", f"{p}/router/+", f"{p}/task/+/+/events"]
    operations = [f"{p}/desired/+", f"{p}/control/+"]  # operators alone write desired states and orders
    assert acl.publish["ops"] == [f"{p}/trace/request", *operations]  # and the dashboard asks for full traces
    assert acl.subscribe["ops"] == fabric + operations
    assert acl.publish["carol"] == [f"{p}/trace/request", *operations, f"{p}/task/submit/carol"]
    assert acl.subscribe["carol"] == [*fabric, *operations, f"{p}/reply/carol", f"{p}/task/carol/+/events"]
    ops = load_node_config(rendered / "operators/ops.yaml", environment=False)
    assert ops.role == "operator" and ops.connection.username == "ops" and ops.connection.password is not None
    assert load_node_config(rendered / "operators/carol.yaml", environment=False).role == "operator"
    assert not (rendered / "clients/carol.yaml").exists()  # one account, one file
    assert load_node_config(rendered / "clients/alice.yaml", environment=False).role == "client"
    block = (rendered / "broker/acl").read_text().split("user ops\n")[1].split("\n\n")[0].splitlines()
    assert block == [f"topic write {topic}" for topic in [f"{p}/trace/request", *operations]] + [
        f"topic read {topic}" for topic in fabric + operations
    ]


def test_mosquitto_acl_and_config_name_the_same_rules(rendered: Path) -> None:
    text = (rendered / "broker/acl").read_text()
    block = text.split("user node-b\n")[1].split("\n\n")[0].splitlines()
    assert "topic write symphony/lab/beacon/node-b" in block
    assert "topic read symphony/lab/agent/node-b-writer/run" in block
    assert not any("beacon/node-a" in line or "reply" in line for line in block)
    config = (rendered / "broker/mosquitto.conf").read_text()
    assert "allow_anonymous false" in config
    assert "password_file /etc/symphony-edge/broker/passwd" in config
    assert "acl_file /etc/symphony-edge/broker/acl" in config
    assert "listener 1883 0.0.0.0" in config


def test_every_rendered_file_is_private(rendered: Path) -> None:
    files = [path for path in rendered.rglob("*") if path.is_file()]
    assert files
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in files)
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o700 for path in rendered.rglob("*") if path.is_dir())


def test_rendering_again_keeps_secrets_and_changes_nothing(tmp_path: Path) -> None:
    inventory, fleet = write_fleet(tmp_path)
    render(inventory, fleet, tmp_path / "out")
    before = {path: path.read_bytes() for path in (tmp_path / "out").rglob("*") if path.is_file()}
    report = render(inventory, fleet, tmp_path / "out")
    assert report.changed == []
    assert {path: path.read_bytes() for path in before} == before


def test_a_new_host_gets_a_new_password_and_the_others_keep_theirs(tmp_path: Path) -> None:
    inventory, fleet = write_fleet(tmp_path)
    render(inventory, fleet, tmp_path / "out")
    old = secrets_of(tmp_path / "out")
    inventory.write_text(INVENTORY.replace("node-b\n", "node-b\nnode-c\n"))
    report = render(inventory, fleet, tmp_path / "out")
    new = secrets_of(tmp_path / "out")
    assert {user: new[user] for user in old} == old and "node-c" in new
    assert "nodes/node-c/node.yaml" in report.changed and "nodes/node-a/node.yaml" in report.unchanged


def test_tls_renders_a_ca_and_certificates_that_verify_and_are_kept(tmp_path: Path) -> None:
    from cryptography import x509

    fleet = {**FLEET, "broker": {"kind": "mosquitto", "hosts": ["hub"], "tls": True}}
    inventory, fleet_file = write_fleet(tmp_path, fleet)
    render(inventory, fleet_file, tmp_path / "out")
    out = tmp_path / "out"
    ca = x509.load_pem_x509_certificate((out / "ca/ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((out / "broker/tls/server.crt").read_bytes())
    client = x509.load_pem_x509_certificate((out / "nodes/node-a/tls/client.crt").read_bytes())
    server.verify_directly_issued_by(ca)
    client.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "10.0.0.1" in [str(address) for address in names.get_values_for_type(x509.IPAddress)]
    node = load_node_config(out / "nodes/node-a/node.yaml", environment=False)
    assert node.connection.brokers == ("mqtts://10.0.0.1:8883",)
    assert node.connection.tls is not None and str(node.connection.tls.cert_file) == "/etc/symphony-edge/tls/client.crt"
    assert "require_certificate true" in (out / "broker/mosquitto.conf").read_text()
    assert render(inventory, fleet_file, out).changed == []


def test_secrets_never_reach_the_report(rendered: Path, tmp_path: Path) -> None:
    report = render(tmp_path / "inventory.ini", tmp_path / "fleet.yml", rendered)
    assert not any(password in repr(report) for password in secrets_of(rendered).values())


@pytest.mark.parametrize(
    ("fleet", "message"),
    [
        ({**FLEET, "routers": ["nowhere"]}, "nowhere"),
        ({**FLEET, "fabric": "a/b"}, "fabric"),
        ({**FLEET, "clients": ["node-a"]}, "also node names"),
        ({**FLEET, "operators": ["hub"]}, "also node names"),
        ({**FLEET, "operators": ["a/b"]}, "account id"),
        ({**FLEET, "agents": {"node-a": [{"agent_id": "x"}, {"agent_id": "x"}]}}, "repeat"),
        ({**FLEET, "unknown": 1}, "unknown"),
        ({k: v for k, v in FLEET.items() if k != "broker"}, "broker"),
    ],
)
def test_a_bad_fleet_file_is_refused_with_a_reason(tmp_path: Path, fleet: dict[str, Any], message: str) -> None:
    with pytest.raises(ProvisioningError, match=message):
        render(*write_fleet(tmp_path, fleet), tmp_path / "out")


def test_each_client_gets_a_gateway_api_key_kept_across_renders(tmp_path: Path) -> None:
    from shared.http_auth import ClientAccount, load_keys

    out = tmp_path / "out"
    render(*write_fleet(tmp_path), out)
    secrets = yaml.safe_load((out / "secrets.yaml").read_text())
    keys = load_keys(out / "gateway/api-keys.yaml")
    assert {account.client for account in keys.values()} == set(secrets["api_keys"])
    for key, account in keys.items():
        assert key == secrets["api_keys"][account.client] and key.startswith("sk-symphony-")
        assert account == ClientAccount(account.client, secrets["passwords"][account.client])
    render(*write_fleet(tmp_path), out)
    assert load_keys(out / "gateway/api-keys.yaml") == keys


def test_home_assistant_discovery_is_configured_and_allowed_per_node(tmp_path: Path) -> None:
    fleet = {**FLEET, "home_assistant": {"discovery_prefix": "ha"}}
    render(*write_fleet(tmp_path, fleet), tmp_path / "out")
    node = load_node_config(tmp_path / "out/nodes/node-a/node.yaml", environment=False)
    assert node.home_assistant is not None and node.home_assistant.discovery_prefix == "ha"
    acl = TopicACL.load(tmp_path / "out/broker/amqtt-acl.yaml")
    assert "ha/+/symphony_lab_node-a/+/config" in acl.publish["node-a"]  # its own configs, nobody else's
    assert "ha/+/symphony_lab_node-b/+/config" not in acl.publish["node-a"]
    assert "ha/status" in acl.subscribe["node-a"]  # Home Assistant's birth: republish the configs
    mosquitto = (tmp_path / "out/broker/acl").read_text()
    assert "topic write ha/+/symphony_lab_node-a/+/config" in mosquitto
    # Home Assistant logs in as an operator: it reads the configs and the fabric, and announces its birth.
    assert {"ha/#", "symphony/lab/beacon/+", "symphony/lab/state/+"} <= set(acl.subscribe["ops"])
    assert acl.publish["ops"] == [
        "symphony/lab/trace/request",
        "symphony/lab/desired/+",
        "symphony/lab/control/+",
        "ha/status",
    ]


def test_without_home_assistant_nodes_get_no_discovery_topics(rendered: Path) -> None:
    assert load_node_config(rendered / "nodes/node-a/node.yaml", environment=False).home_assistant is None
    assert "homeassistant" not in (rendered / "broker/acl").read_text()


def test_the_fleets_teachers_and_caps_reach_every_router(tmp_path: Path) -> None:
    fleet = {**FLEET, "teachers": ["alice"], "limits": {"tasks": 4, "cot_count": 5}, "max_deadline_s": 90}
    fleet["account_limits"] = {"alice": {"tasks": 64}}
    render(*write_fleet(tmp_path, fleet), tmp_path / "out")
    router = load_node_config(tmp_path / "out/nodes/hub/node.yaml", environment=False).router
    assert router is not None and router.teachers == ("alice",) and router.max_deadline_s == 90
    assert (router.limits.tasks, router.limits.cot_count, router.account_limits["alice"].tasks) == (4, 5, 64)
    default = tmp_path / "default"
    default.mkdir()
    render(*write_fleet(default), default / "out")
    router = load_node_config(default / "out/nodes/hub/node.yaml", environment=False).router
    assert router is not None and router.teachers == () and router.limits.tasks == 16  # a shared LAN's default


def test_a_teacher_must_be_a_client(tmp_path: Path) -> None:
    with pytest.raises(ProvisioningError, match="teachers must be clients"):
        render(*write_fleet(tmp_path, {**FLEET, "teachers": ["mallory"]}), tmp_path / "out")
