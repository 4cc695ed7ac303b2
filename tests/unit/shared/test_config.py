"""Node config: YAML, environment overrides, errors that name the file and the field, the CLI's exit code."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_agent.cli.main import cli
from shared.config import DEFAULT_BROKER, BrokerURL, load_node_config
from shared.errors import ConfigError

GOOD = """
node_id: board-7
state_interval_s: 1.5
connection:
  fabric: lab
  brokers: [mqtt://10.0.0.2:1883, "10.0.0.3:1884"]
  username: board-7
  password: s3cret
  keepalive_s: 4
agents:
  - preset: math
    backend: echo
    max_in_flight: 2
    queue_size: 1
    backend_settings: {delay_s: 0.5}
"""


def set_environment(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def write(tmp_path: Path, text: str, name: str = "node.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loads_a_node_config_from_yaml(tmp_path: Path) -> None:
    config = load_node_config(write(tmp_path, GOOD), environment=False)
    assert config.node_id == "board-7"
    assert config.state_interval_s == 1.5
    assert config.connection.fabric == "lab"
    assert [str(url) for url in config.connection.broker_urls()] == ["mqtt://10.0.0.2:1883", "mqtt://10.0.0.3:1884"]
    assert config.connection.username == "board-7"
    assert config.connection.password is not None
    assert config.connection.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config)
    assert config.connection.keepalive_s == 4
    (agent,) = config.agents
    assert (agent.preset, agent.backend, agent.max_in_flight, agent.queue_size) == ("math", "echo", 2, 1)
    assert agent.backend_settings == {"delay_s": 0.5}


def test_defaults_without_a_file() -> None:
    config = load_node_config(None, environment=False)
    assert config.connection.brokers == (DEFAULT_BROKER,)
    assert config.connection.fabric == "default"
    assert config.connection.keepalive_s == 10
    assert config.node_id  # the host name, made topic-safe
    assert "/" not in config.node_id and "+" not in config.node_id


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    assert load_node_config(write(tmp_path, ""), environment=False).connection.brokers == (DEFAULT_BROKER,)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {
        "SYMPHONY_EDGE_NODE_ID": "from-env",
        "SYMPHONY_EDGE_FABRIC": "envfabric",
        "SYMPHONY_EDGE_BROKERS": "mqtt://127.0.0.1:2000, mqtt://127.0.0.1:2001 ,",
        "SYMPHONY_EDGE_USERNAME": "env-user",
        "SYMPHONY_EDGE_PASSWORD": "env-pass",
        "SYMPHONY_EDGE_STATE_DIR": str(tmp_path / "state"),
    }
    set_environment(monkeypatch, environ)
    config = load_node_config(write(tmp_path, GOOD))
    assert config.node_id == "from-env"
    assert config.connection.fabric == "envfabric"
    assert config.connection.brokers == ("mqtt://127.0.0.1:2000", "mqtt://127.0.0.1:2001")
    assert config.connection.username == "env-user"
    assert config.connection.password is not None
    assert config.connection.password.get_secret_value() == "env-pass"
    assert config.resolved_state_dir() == tmp_path / "state"
    assert config.connection.keepalive_s == 4  # untouched settings of the file survive


def test_explicit_overrides_win_over_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYMPHONY_EDGE_NODE_ID", "from-env")
    config = load_node_config(
        write(tmp_path, GOOD),
        node_id="from-cli",
        **{"connection.fabric": None},
    )
    assert config.node_id == "from-cli"
    assert config.connection.fabric == "lab"  # a None override leaves the value alone


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("connection:\n  keepalive_s: 1\n", "connection.keepalive_s"),
        ("connection:\n  subscribe_qos: 2\n", "connection.subscribe_qos"),
        ("connection:\n  brokers: []\n", "connection.brokers"),
        ("connection:\n  brokers: ['http://x:1']\n", "connection.brokers"),
        ("connection:\n  brokers: ['mqtt://a:1', 'mqtts://b:2']\n", "connection.brokers"),
        ("node_id: 'a/b'\n", "node_id"),
        ("agents:\n  - max_in_flight: 0\n", "agents.0.max_in_flight"),
        ("agents:\n  - backend: echo\n    colour: red\n", "agents.0.colour"),
        ("state_interval_s: soon\n", "state_interval_s"),
        ("typo_setting: 1\n", "typo_setting"),
    ],
)
def test_a_bad_field_names_the_file_and_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_node_config(path, environment=False)
    message = str(raised.value)
    assert str(path) in message
    assert field in message


def test_a_bad_environment_value_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYMPHONY_EDGE_NODE_ID", "#")
    with pytest.raises(ConfigError, match="node_id"):
        load_node_config(write(tmp_path, GOOD))


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"SYMPHONY_EDGE_SITE": "a/b"}, "connection.site (from SYMPHONY_EDGE_SITE)"),
        ({"SYMPHONY_EDGE_BROKERS": " , "}, "connection.brokers (from SYMPHONY_EDGE_BROKERS)"),
        ({"SYMPHONY_EDGE_BROKERS": "http://x:1"}, "connection.brokers (from SYMPHONY_EDGE_BROKERS)"),
    ],
)
def test_a_bad_environment_value_names_the_variable(
    environ: dict[str, str], variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_environment(monkeypatch, environ)
    with pytest.raises(ConfigError) as raised:
        load_node_config(None)
    assert variable in str(raised.value)


def test_an_empty_broker_variable_and_other_variables_leave_the_config_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_environment(monkeypatch, {"SYMPHONY_EDGE_BROKERS": "", "SYMPHONY_EDGE_MODELS": "/elsewhere", "OTHER": "x"})
    config = load_node_config(write(tmp_path, GOOD))
    assert config.connection.brokers == ("mqtt://10.0.0.2:1883", "10.0.0.3:1884")


def test_an_explicit_override_replaces_a_bad_environment_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYMPHONY_EDGE_NODE_ID", "#")
    config = load_node_config(write(tmp_path, GOOD), node_id="from-cli")
    assert config.node_id == "from-cli"


@pytest.mark.parametrize(
    ("text", "hint"),
    [("key: [unclosed\n", "not valid YAML"), ("- a\n- b\n", "top level must be a mapping")],
)
def test_unreadable_yaml_names_the_file(tmp_path: Path, text: str, hint: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=hint) as raised:
        load_node_config(path, environment=False)
    assert str(path) in str(raised.value)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_node_config(tmp_path / "absent.yaml", environment=False)


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("mqtt://h:1", "mqtt://h:1"),
        ("h", "mqtt://h:1883"),
        ("mqtts://h", "mqtts://h:8883"),
        ("ssl://h:99", "mqtts://h:99"),
        ("tcp://[::1]:5", "mqtt://[::1]:5"),
    ],
)
def test_broker_urls(url: str, parsed: str) -> None:
    assert str(BrokerURL.parse(url)) == parsed


@pytest.mark.parametrize("url", ["http://h:1", "mqtt://user:pw@h:1", "mqtt://:1"])
def test_bad_broker_urls(url: str) -> None:
    with pytest.raises(ValueError):
        BrokerURL.parse(url)


def test_cli_start_exits_2_on_a_bad_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, "connection:\n  keepalive_s: 1\n", "bad.yaml")
    result = CliRunner().invoke(cli, ["start", "-c", str(path)])
    assert result.exit_code == 2, result.output
    assert "bad.yaml" in result.output
    assert "keepalive_s" in result.output


def test_cli_start_exits_2_on_a_missing_config_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["start", "-c", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2, result.output
    assert "absent.yaml" in result.output
