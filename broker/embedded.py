"""The embedded broker: amqtt (pure Python, MQTT 3.1.1) with the kit's access policy.

amqtt refuses every CONNECT unless an authentication plugin is configured, so the config always names one:
the anonymous plugin on loopback, the password-file plugin otherwise. A topic ACL (publish and subscribe lists
per username, as rendered by provisioning) is enforced by amqtt's topic ACL plugin when given. With `tls`, the
listener serves MQTT over TLS only (amqtt's listener `ssl`/`certfile`/`keyfile`/`cafile`), and with a CA it
requires a client certificate signed by that CA, as the rendered mosquitto config does (`require_certificate`).
`limits` bound what a peer may cost before and after it authenticates (broker.limits; enforced in amqtt_fixes).

Memory: every message the broker relays is a short-lived Python object of a few KiB (retained task-ledger
entries above all). glibc keeps the freed memory in its arenas, fragmented, so the broker's RSS crept up by
~0.5 MiB a minute under load while its live Python heap stayed flat (tracemalloc). The broker hands free memory
back to the system every `TRIM_INTERVAL_S` (glibc's `malloc_trim`; nothing to do on other C libraries).

Stopping: amqtt's shutdown drops every client first and closes its listeners last, so clients that reconnect at
once (every kit component does) got in again, were served by a broker that no longer relayed anything, and kept
`wait_closed` from ever returning: SIGTERM never ended the process (30 s and more, until SIGKILL; systemd waits
90 s), and a broker restart cost the fleet that long. `stop` closes the listeners first and bounds the shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from broker.limits import ConnectionLimits
from broker.policy import anonymous_allowed, free_port
from shared.errors import ConfigError

log = logging.getLogger(__name__)

ANONYMOUS_PLUGIN = "amqtt.plugins.authentication.AnonymousAuthPlugin"
PASSWORD_FILE_PLUGIN = "amqtt.plugins.authentication.FileAuthPlugin"
TRIM_INTERVAL_S = 30.0
SHUTDOWN_TIMEOUT_S = 2.0  # a clean shutdown takes well under a second; a client caught mid-CONNECT holds it
TOPIC_ACL_PLUGIN = "amqtt.plugins.topic_checking.TopicAccessControlListPlugin"
WILL_ACL_PLUGIN = "broker.will_acl.WillTopicACLPlugin"


@dataclass(frozen=True)
class TopicACL:
    """Per-username topic filters a client may publish to and subscribe to, and `patterns` (`publish` and
    `subscribe` lists) that hold for every username with `%u` standing for it, as mosquitto's `pattern` lines."""

    publish: dict[str, list[str]] = field(default_factory=dict)
    subscribe: dict[str, list[str]] = field(default_factory=dict)
    patterns: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> TopicACL:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"{path}: cannot read the topic ACL: {error}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the topic ACL must be a mapping with 'publish' and 'subscribe'")
        patterns = dict(data.get("patterns") or {})
        if set(patterns) - {"publish", "subscribe"}:
            raise ConfigError(f"{path}: 'patterns' holds only 'publish' and 'subscribe' lists")
        return cls(dict(data.get("publish") or {}), dict(data.get("subscribe") or {}), patterns)

    def for_usernames(self, usernames: list[str]) -> TopicACL:
        """The ACL with its patterns written out for each username (amqtt's plugin knows no pattern). A username
        holding `+`, `#` or `/` gets no pattern: it would widen the filter it stands in (mosquitto refuses every
        access to a username with `+` or `#`)."""
        publish = {user: list(filters) for user, filters in self.publish.items()}
        subscribe = {user: list(filters) for user, filters in self.subscribe.items()}
        for user in usernames:
            if not user or any(character in user for character in "+#/"):
                continue
            for rules, kind in ((publish, "publish"), (subscribe, "subscribe")):
                expanded = [pattern.replace("%u", user) for pattern in self.patterns.get(kind, ())]
                rules[user] = list(dict.fromkeys([*rules.get(user, []), *expanded]))
        return TopicACL(publish, subscribe)


@dataclass(frozen=True)
class BrokerTLS:
    """The broker's certificate and key, and the CA that client certificates must be signed by (None: no
    client certificate is asked for)."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None

    def check(self) -> None:
        for path in (self.cert_file, self.key_file, self.ca_file):
            if path is not None and not path.is_file():
                raise ConfigError(f"TLS file {path} does not exist")


@dataclass(frozen=True)
class EmbeddedBrokerConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    password_file: Path | None = None
    acl: TopicACL | None = None
    allow_anonymous: bool = False
    tls: BrokerTLS | None = None
    # message size, CONNECT timeout, connections not yet authenticated per address, connections in all
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)


def amqtt_config(config: EmbeddedBrokerConfig) -> dict[str, Any]:
    """The amqtt configuration dictionary for `config` (raises ConfigError on an unsafe bind)."""
    anonymous = anonymous_allowed(config.host, config.password_file, config.allow_anonymous)
    plugins: dict[str, Any] = {}
    if anonymous:
        plugins[ANONYMOUS_PLUGIN] = {"allow_anonymous": True}
    else:
        plugins[PASSWORD_FILE_PLUGIN] = {"password_file": str(config.password_file)}
    if config.acl is not None:
        acl = config.acl.for_usernames(_usernames(config.password_file))
        plugins[TOPIC_ACL_PLUGIN] = {"publish_acl": acl.publish, "acl": acl.subscribe}
        plugins[WILL_ACL_PLUGIN] = {"publish_acl": acl.publish}  # amqtt does not check Wills itself
    host = f"[{config.host}]" if ":" in config.host else config.host
    listener: dict[str, Any] = {
        "type": "tcp",
        "bind": f"{host}:{config.port}",
        "max_connections": config.limits.max_connections,
    }
    if config.tls is not None:
        config.tls.check()
        listener.update(ssl=True, certfile=str(config.tls.cert_file), keyfile=str(config.tls.key_file))
        if config.tls.ca_file is not None:
            listener["cafile"] = str(config.tls.ca_file)
    return {"listeners": {"default": listener}, "plugins": plugins}


def _usernames(password_file: Path | None) -> list[str]:
    """The usernames of an amqtt password file (`name:hash` lines)."""
    if password_file is None:
        return []
    lines = password_file.read_text().splitlines()
    return [line.split(":", 1)[0].strip() for line in lines if ":" in line and not line.lstrip().startswith("#")]


class EmbeddedBroker:
    """An amqtt broker running in the current event loop."""

    def __init__(self, config: EmbeddedBrokerConfig) -> None:
        if config.port == 0:
            config = EmbeddedBrokerConfig(**{**config.__dict__, "port": free_port(config.host)})
        self.config = config
        self._amqtt_config = amqtt_config(config)
        self._broker: Any = None
        self._trimming: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"{'mqtts' if self.config.tls else 'mqtt'}://{host}:{self.config.port}"

    async def start(self) -> None:
        from broker.amqtt_fixes import SymphonyBroker  # imported lazily: only broker hosts need amqtt

        self._broker = SymphonyBroker(self._amqtt_config, self.config.limits)
        await self._broker.start()
        trim = _malloc_trim()
        if trim is not None:
            self._trimming = asyncio.create_task(_trim_forever(trim), name="broker.trim")
        log.info("embedded amqtt broker listening on %s", self.url)

    async def stop(self) -> None:
        if self._trimming is not None:
            self._trimming.cancel()
            self._trimming = None
        if self._broker is not None:
            _stop_accepting(self._broker)
            try:
                await asyncio.wait_for(self._broker.shutdown(), SHUTDOWN_TIMEOUT_S)
            except asyncio.TimeoutError:
                log.warning("the embedded broker did not shut down within %g s; stopping anyway", SHUTDOWN_TIMEOUT_S)
            except Exception:  # amqtt may raise while tearing down closed sessions; we stop either way
                log.debug("amqtt raised during shutdown", exc_info=True)
            self._broker = None

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def _stop_accepting(broker: Any) -> None:
    """Close every listener of an amqtt broker (no new connection) before its shutdown drops the clients."""
    for server in getattr(broker, "_servers", {}).values():  # amqtt keeps its listeners there (broker.Server)
        with contextlib.suppress(Exception):
            server.instance.close()


def _malloc_trim() -> Any:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        return ctypes.CDLL(library).malloc_trim
    except (OSError, AttributeError):
        return None


async def _trim_forever(trim: Any) -> None:
    while True:
        await asyncio.sleep(TRIM_INTERVAL_S)
        trim(0)


async def serve_until_signalled(config: EmbeddedBrokerConfig, ready_message: bool = True) -> None:
    """Run the embedded broker until SIGINT or SIGTERM, then shut it down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    async with EmbeddedBroker(config) as broker:
        if ready_message:
            print(f"embedded broker ready on {broker.url} (Ctrl+C to stop)", flush=True)
        await stop.wait()
    print("broker stopped", flush=True)
