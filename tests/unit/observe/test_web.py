"""The dashboard's access rules: loopback is open, anything else needs the fabric's credentials."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr

from fleet_observe.web import basic_auth_ok, is_loopback, required_credentials
from shared.config import ConnectionSettings
from shared.errors import ConfigError


def header(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.5", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("board.local", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (header("user:secret"), True),
        (header("user:wrong"), False),
        (header("user:secret:extra"), False),
        ("Bearer abc", False),
        ("Basic !!!not-base64", False),
        (None, False),
    ],
)
def test_basic_auth_ok(value: str | None, ok: bool) -> None:
    assert basic_auth_ok(value, "user", "secret") is ok


def test_a_non_loopback_host_needs_the_mqtt_credentials() -> None:
    assert required_credentials("127.0.0.1", ConnectionSettings()) is None
    with pytest.raises(ConfigError, match=r"connection\.username/password"):
        required_credentials("0.0.0.0", ConnectionSettings())
    protected = ConnectionSettings(username="ops", password=SecretStr("s3cret"))
    assert required_credentials("0.0.0.0", protected) == ("ops", "s3cret")
