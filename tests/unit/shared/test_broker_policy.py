"""Who may connect to a broker we host (anonymous only on loopback) and the rendered mosquitto config."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from broker.embedded import ANONYMOUS_PLUGIN, PASSWORD_FILE_PLUGIN, EmbeddedBrokerConfig, amqtt_config
from broker.mosquitto import MosquittoConfig, render_config
from broker.policy import anonymous_allowed, free_port, is_loopback
from shared.errors import ConfigError


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("10.0.0.1", False),
        ("board.local", False),
        ("", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "passwords"
    path.write_text("user:hash\n")
    return path


def test_anonymous_on_loopback_without_a_password_file() -> None:
    assert anonymous_allowed("127.0.0.1", None, allow_anonymous=False) is True


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::"])
def test_non_loopback_without_a_password_file_is_refused(host: str) -> None:
    with pytest.raises(ConfigError, match="password file"):
        anonymous_allowed(host, None, allow_anonymous=False)


def test_allow_anonymous_opens_a_non_loopback_bind_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="broker.policy"):
        assert anonymous_allowed("0.0.0.0", None, allow_anonymous=True) is True
    assert "ANONYMOUS" in caplog.text


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
@pytest.mark.parametrize("allow", [False, True])
def test_a_password_file_always_wins(password_file: Path, host: str, allow: bool) -> None:
    assert anonymous_allowed(host, password_file, allow_anonymous=allow) is False


def test_a_missing_password_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        anonymous_allowed("0.0.0.0", tmp_path / "absent", allow_anonymous=False)


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536


def test_amqtt_config_uses_the_anonymous_plugin_on_loopback_only(password_file: Path) -> None:
    loopback = amqtt_config(EmbeddedBrokerConfig(host="127.0.0.1", port=1999))
    assert list(loopback["plugins"]) == [ANONYMOUS_PLUGIN]
    assert loopback["listeners"]["default"]["bind"] == "127.0.0.1:1999"
    protected = amqtt_config(EmbeddedBrokerConfig(host="0.0.0.0", port=1999, password_file=password_file))
    assert list(protected["plugins"]) == [PASSWORD_FILE_PLUGIN]
    assert protected["plugins"][PASSWORD_FILE_PLUGIN]["password_file"] == str(password_file)
    with pytest.raises(ConfigError):
        amqtt_config(EmbeddedBrokerConfig(host="0.0.0.0", port=1999))


def settings(text: str) -> dict[str, str]:
    """The rendered mosquitto.conf as a {directive: value} mapping (one value per directive here)."""
    pairs = [line.split(" ", 1) for line in text.splitlines() if line and not line.startswith("#")]
    return {key: value for key, value in pairs}


def test_render_config_on_loopback() -> None:
    conf = settings(render_config(MosquittoConfig(host="127.0.0.1", port=1884)))
    assert conf["listener"] == "1884 127.0.0.1"
    assert conf["allow_anonymous"] == "true"
    assert conf["max_queued_messages"] == "0"
    assert conf["max_inflight_messages"] == "100"
    assert conf["set_tcp_nodelay"] == "true"
    assert "password_file" not in conf


def test_render_config_lifts_the_queue_limits() -> None:
    conf = settings(render_config(MosquittoConfig(max_queued_messages=5000, max_inflight_messages=250)))
    assert conf["max_queued_messages"] == "5000"
    assert conf["max_inflight_messages"] == "250"


def test_render_config_off_loopback_needs_and_uses_the_password_file(password_file: Path) -> None:
    with pytest.raises(ConfigError):
        render_config(MosquittoConfig(host="0.0.0.0"))
    conf = settings(render_config(MosquittoConfig(host="0.0.0.0", port=1883, password_file=password_file)))
    assert conf["allow_anonymous"] == "false"
    assert conf["password_file"] == str(password_file)
    assert conf["listener"] == "1883 0.0.0.0"
    assert conf["set_tcp_nodelay"] == "true"


def test_render_config_with_acl_and_persistence(tmp_path: Path, password_file: Path) -> None:
    acl = tmp_path / "acl"
    conf = settings(
        render_config(
            MosquittoConfig(host="0.0.0.0", password_file=password_file, acl_file=acl, persistence_dir=tmp_path)
        )
    )
    assert conf["acl_file"] == str(acl)
    assert conf["persistence"] == "true"
    assert conf["persistence_location"] == f"{tmp_path}/"
