"""Who may call the gateway and the dashboard: API keys, the fabric login, anonymous on loopback only."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.http_auth import Authenticator, ClientAccount, Unauthorized, load_keys

KEY = "sk-symphony-0123456789abcdef"


def test_a_keys_file_maps_each_key_to_its_client_account(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(f"keys:\n  - key: {KEY}\n    client: laptop\n    password: pw\n  - key: {KEY}x\n    client: ci\n")
    assert load_keys(path) == {KEY: ClientAccount("laptop", "pw"), f"{KEY}x": ClientAccount("ci", None)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("keys: 3", "list `keys`"),
        ("keys:\n  - client: a", "entry 1 needs"),
        ("keys:\n  - {key: short, client: a}", "16"),
    ],
)
def test_a_bad_keys_file_says_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_keys(path)


def test_bearer_keys_and_the_basic_login_are_checked() -> None:
    auth = Authenticator({KEY: ClientAccount("laptop")}, login=("ops", "s3cret"))
    assert auth.check(f"Bearer {KEY}") == ClientAccount("laptop")
    assert auth.check("Basic " + base64.b64encode(b"ops:s3cret").decode()) is None
    for header in (None, "Bearer nope", "Basic " + base64.b64encode(b"ops:wrong").decode(), "Basic !!"):
        with pytest.raises(Unauthorized):
            auth.check(header)


def test_anonymous_access_only_on_loopback() -> None:
    assert Authenticator.for_host("127.0.0.1").check(None) is None
    assert Authenticator.for_host("::1").anonymous
    with pytest.raises(ConfigError, match="keys file"):
        Authenticator.for_host("0.0.0.0")
    assert not Authenticator.for_host("0.0.0.0", {KEY: ClientAccount("laptop")}).anonymous
