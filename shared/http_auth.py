"""Who may use the HTTP endpoints (the gateway and the dashboard): the same rule for both.

    Authorization: Bearer <api key>      a key from the keys file → the fabric client account it maps to
    Authorization: Basic <user:pass>     the fabric's MQTT login (what a browser on the dashboard sends)
    nothing                              only when no key and no login is configured: loopback only

The keys file (rendered by `edge-agent provision render` as gateway/api-keys.yaml)::

    keys:
      - key: sk-symphony-...        # what the application sends as its bearer token
        client: laptop              # the fabric client account the key stands for
        password: ...               # that account's MQTT password (omit on a fabric without passwords)
        name: laptop-ci             # optional: the key's name in usage and metrics (default: the client)
        quota:                      # optional: every limit may be left out (no limit), as may `quota`
          concurrent_tasks: 2       # tasks in flight at once
          requests_per_minute: 30   # chat completions per rolling minute
          tokens_per_day: 200000    # prompt + completion tokens per rolling 24 hours
          max_cot_count: 3          # most voted runs per step a request may ask for
          max_plan_k: 2             # most planners a request may ask for
          max_deadline_s: 60        # a request's deadline is cut to this (and to the gateway's --deadline)

The Host header rule against DNS rebinding (`host_allowed`) lives here too: a server that answers anonymously on
loopback serves only requests addressed to a loopback name, so a web page whose name was re-pointed at 127.0.0.1
cannot read it from the operator's browser.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from shared.errors import ConfigError, SymphonyError
from shared.network import is_loopback

LOOPBACK_HOST_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "ip6-localhost"})


@dataclass(frozen=True)
class KeyQuota:
    """What one API key may use (None: no limit); enforced by the gateway (fleet_gateway.quotas)."""

    concurrent_tasks: int | None = None
    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    max_cot_count: int | None = None
    max_plan_k: int | None = None
    max_deadline_s: float | None = None

    @property
    def unlimited(self) -> bool:
        return all(getattr(self, item.name) is None for item in fields(self))


@dataclass(frozen=True)
class ClientAccount:
    """The fabric client account an API key stands for (with the key's quota and its name in usage reports)."""

    client: str
    password: str | None = None
    quota: KeyQuota = field(default=KeyQuota(), compare=False)
    name: str = field(default="", compare=False)

    @property
    def label(self) -> str:
        """The key's name in usage counters and metrics (its client account unless the keys file names it)."""
        return self.name or self.client


class Unauthorized(SymphonyError):
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
        quota = _quota(entry.get("quota"), f"{path}: entry {number}")
        name = str(entry.get("name") or "")
        keys[str(entry["key"])] = ClientAccount(
            str(entry["client"]), None if password is None else str(password), quota, name
        )
    return keys


def _quota(data: Any, where: str) -> KeyQuota:
    """The `quota:` mapping of a key entry (absent: no limits); each limit a positive number."""
    if data is None:
        return KeyQuota()
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: `quota` must be a mapping of limits")
    known = {item.name: item for item in fields(KeyQuota)}
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name not in known:
            raise ConfigError(f"{where}: unknown quota {name!r} (known: {', '.join(known)})")
        if value is None:
            continue
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if number is None or number <= 0 or (name != "max_deadline_s" and not isinstance(number, int)):
            raise ConfigError(
                f"{where}: quota {name} must be a positive {'number' if name == 'max_deadline_s' else 'whole number'}"
            )
        values[name] = number
    return KeyQuota(**values)


def host_allowed(host_header: str | None, extra_hosts: frozenset[str] = frozenset()) -> bool:
    """True when a request's Host header names this machine's loopback (any port) or one of `extra_hosts`.

    A server answering anonymously on loopback checks this: DNS rebinding points a web page's own name at
    127.0.0.1, so the page's requests reach us carrying that name, never `localhost`.
    """
    name = _host_name(host_header or "")
    return name is not None and (name in LOOPBACK_HOST_NAMES or name in extra_hosts)


def _host_name(header: str) -> str | None:
    """The lower-case name of a Host header without its port (`[::1]:8000` -> `::1`); None when malformed."""
    header = header.strip().lower()
    if header.startswith("["):
        name, bracket, rest = header[1:].partition("]")
        return name if bracket and (not rest or (rest.startswith(":") and rest[1:].isdigit())) else None
    name, colon, port = header.partition(":")
    if colon and not port.isdigit():
        return None
    return name.rstrip(".") or None


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
            account = self._account_of(value)
            if account is None:
                raise Unauthorized("invalid API key")
            return account
        if scheme.lower() == "basic" and self.login is not None and _basic_ok(value, *self.login):
            return None
        if scheme.lower() == "basic" and (account := self._basic_key(value)) is not None:
            return account  # a browser's login form: the client account as user name, its API key as password
        raise Unauthorized("an API key is required (Authorization: Bearer <key>)")

    def _account_of(self, given: str) -> ClientAccount | None:
        found = None
        for key, account in self.keys.items():  # every key compared, in constant time each
            if hmac.compare_digest(key.encode(), given.encode()):
                found = account
        return found

    def _basic_key(self, value: str) -> ClientAccount | None:
        user, _, key = _basic_text(value).partition(":")
        account = self._account_of(key) if key else None
        return account if account is not None and hmac.compare_digest(account.client.encode(), user.encode()) else None


def _basic_text(value: str) -> str:
    """The `user:password` of a basic-auth value ("" when it is not valid base64 or UTF-8)."""
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""


def _basic_ok(value: str, username: str, password: str) -> bool:
    given = _basic_text(value)
    return bool(given) and hmac.compare_digest(given.encode(), f"{username}:{password}".encode())
