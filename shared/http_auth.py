"""Who may use the HTTP endpoints (the gateway and the dashboard): the same rule for both.

    Authorization: Bearer <api key>      a key from the keys file → the fabric client account it maps to
    Authorization: Basic <user:pass>     the fabric's MQTT login (what a browser on the dashboard sends)
    nothing                              only when no key and no login is configured: loopback only

The keys file (rendered by `edge-agent provision render` as gateway/api-keys.yaml)::

    keys:
      - key: sk-symphony-...        # what the application sends as its bearer token
        client: laptop              # the fabric client account the key stands for
        password: ...               # that account's MQTT password (omit on a fabric without passwords)
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from pathlib import Path

import yaml

from shared.errors import ConfigError
from shared.network import is_loopback


@dataclass(frozen=True)
class ClientAccount:
    """The fabric client account an API key stands for."""

    client: str
    password: str | None = None


class Unauthorized(Exception):
    """No valid credentials (401)."""


def load_keys(path: Path) -> dict[str, ClientAccount]:
    """The API keys of a keys file, or a ConfigError saying what is wrong with it."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read the API keys file {path}: {error}") from None
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected a mapping with a list `keys` of {{key, client, password}} entries")
    keys: dict[str, ClientAccount] = {}
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not entry.get("key") or not entry.get("client"):
            raise ConfigError(f"{path}: entry {number} needs a `key` and a `client`")
        if len(str(entry["key"])) < 16:
            raise ConfigError(f"{path}: the key of entry {number} is shorter than 16 characters")
        password = entry.get("password")
        keys[str(entry["key"])] = ClientAccount(str(entry["client"]), None if password is None else str(password))
    return keys


class Authenticator:
    """Checks the Authorization header of a request."""

    def __init__(self, keys: dict[str, ClientAccount] | None = None, login: tuple[str, str] | None = None) -> None:
        self.keys = dict(keys or {})
        self.login = login

    @classmethod
    def for_host(
        cls, host: str, keys: dict[str, ClientAccount] | None = None, login: tuple[str, str] | None = None
    ) -> Authenticator:
        """Refuse to serve a non-loopback host anonymously."""
        if not keys and login is None and not is_loopback(host):
            raise ConfigError(
                f"serving on {host} without credentials would open the fabric to the network: give an API keys "
                "file (--keys-file, rendered by `edge-agent provision render`), or keep the default --host 127.0.0.1"
            )
        return cls(keys, login)

    @property
    def anonymous(self) -> bool:
        return not self.keys and self.login is None

    def check(self, header: str | None) -> ClientAccount | None:
        """The account of a valid API key, None for the login or an anonymous request; raises Unauthorized."""
        if self.anonymous:
            return None
        scheme, _, value = (header or "").partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and value:
            for key, account in self.keys.items():
                if hmac.compare_digest(key.encode(), value.encode()):
                    return account
            raise Unauthorized("invalid API key")
        if scheme.lower() == "basic" and self.login is not None and _basic_ok(value, *self.login):
            return None
        raise Unauthorized("an API key is required (Authorization: Bearer <key>)")


def _basic_ok(value: str, username: str, password: str) -> bool:
    try:
        given = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    return hmac.compare_digest(given.encode(), f"{username}:{password}".encode())
