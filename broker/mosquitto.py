"""Mosquitto for production boards: render its config and run it as a child process.

The defaults of mosquitto drop QoS 1 messages under load (a queue of 1000 messages, 20 in flight), and leave
Nagle's algorithm on; the rendered config lifts both limits and sets TCP_NODELAY. It bounds messages as the
embedded broker does (`message_size_limit`, `max_packet_size`; see broker.limits).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from broker.bridges import Bridge, bridge_lines
from broker.limits import DEFAULT_MESSAGE_SIZE_LIMIT, MQTT_TOPIC_OVERHEAD
from broker.policy import anonymous_allowed

SEARCH_PATHS = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin", "/usr/local/opt/mosquitto/sbin")
INSTALL_HINT = (
    "mosquitto is not installed: `sudo apt-get install -y mosquitto` (Debian/Ubuntu/Jetson), "
    "`brew install mosquitto` (macOS), or run the embedded broker without --mosquitto"
)


@dataclass(frozen=True)
class MosquittoConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    password_file: Path | None = None
    acl_file: Path | None = None
    allow_anonymous: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    require_certificate: bool = False
    persistence_dir: Path | None = None
    max_queued_messages: int = 0  # 0 = unlimited: never drop QoS 1 messages for slow subscribers
    max_inflight_messages: int = 100
    bridges: tuple[Bridge, ...] = ()  # connections from this (site) broker to the hub
    user: str | None = None  # started as root, mosquitto drops to this user (its default: "mosquitto")
    # The largest payload relayed; a packet above it plus the longest topic is not read: the client is disconnected
    # (max_packet_size). 0: mosquitto's own limits (256 MiB).
    message_size_limit: int = DEFAULT_MESSAGE_SIZE_LIMIT


def render_config(config: MosquittoConfig) -> str:
    """mosquitto.conf text for `config` (raises ConfigError on an unsafe bind)."""
    anonymous = anonymous_allowed(config.host, config.password_file, config.allow_anonymous)
    lines = [
        "# rendered by symphony-edge; edits are overwritten",
        "per_listener_settings false",
        f"listener {config.port} {config.host}",
        f"allow_anonymous {'true' if anonymous else 'false'}",
        f"max_queued_messages {config.max_queued_messages}",
        f"max_inflight_messages {config.max_inflight_messages}",
        "set_tcp_nodelay true",
        *_size_lines(config.message_size_limit),
        "log_dest stderr",
        "log_type error",
        "log_type warning",
    ]
    if config.user is not None:
        lines.append(f"user {config.user}")
    if config.password_file is not None:
        lines.append(f"password_file {config.password_file}")
    if config.acl_file is not None:
        lines.append(f"acl_file {config.acl_file}")
    if config.cert_file is not None:
        lines += [f"cafile {config.ca_file}", f"certfile {config.cert_file}", f"keyfile {config.key_file}"]
        lines.append(f"require_certificate {'true' if config.require_certificate else 'false'}")
    lines.append(f"persistence {'true' if config.persistence_dir else 'false'}")
    if config.persistence_dir is not None:
        lines.append(f"persistence_location {config.persistence_dir}/")
    for bridge in config.bridges:
        lines += bridge_lines(bridge)
    return "\n".join(lines) + "\n"


def _size_lines(message_size_limit: int) -> list[str]:
    if message_size_limit <= 0:
        return []
    return [f"message_size_limit {message_size_limit}", f"max_packet_size {message_size_limit + MQTT_TOPIC_OVERHEAD}"]


def file_owner(path: Path) -> str:
    """The user name owning `path` (mosquitto started as root must run as a user that can read it)."""
    import pwd

    return pwd.getpwuid(path.stat().st_uid).pw_name


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary, or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for folder in SEARCH_PATHS:
        candidate = Path(folder) / "mosquitto"
        if candidate.exists():
            return str(candidate)
    return None


def start_mosquitto(config_file: Path, binary: str | None = None) -> subprocess.Popen[bytes]:
    """Start mosquitto on `config_file` as a child process."""
    executable = binary or find_mosquitto()
    if executable is None:
        raise FileNotFoundError(INSTALL_HINT)
    raise_open_file_limit()  # inherited by mosquitto
    return subprocess.Popen([executable, "-c", str(config_file)])


def raise_open_file_limit(wanted: int = 65_536) -> int:
    """Lift this process's soft open-file limit towards `wanted` (as far as the hard limit allows); returns it.

    mosquitto has no per-address cap: every connection, authenticated or not, holds a file descriptor until its
    CONNECT times out (90 s). At the common soft limit of 1,024, 1,100 silent sockets locked every client out."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def stop_process(process: subprocess.Popen[bytes], timeout: float = 5.0) -> int:
    """SIGTERM, then SIGKILL if the process does not exit within `timeout`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)
