"""Who may connect to a broker we host: anonymous access only on loopback (DESIGN §7)."""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from pathlib import Path

from shared.errors import ConfigError
from shared.network import is_loopback

__all__ = ["anonymous_allowed", "free_port", "is_loopback", "wait_for_port"]

log = logging.getLogger(__name__)


def anonymous_allowed(host: str, password_file: Path | None, allow_anonymous: bool) -> bool:
    """Decide whether a broker bound to `host` lets clients in without credentials.

    Loopback without a password file: anonymous. Any other bind needs a password file, unless the operator
    explicitly asked for anonymous access (then a warning is logged). A password file always wins.
    """
    if password_file is not None:
        if not password_file.exists():
            raise ConfigError(f"password file {password_file} does not exist")
        return False
    if is_loopback(host):
        return True
    if allow_anonymous:
        log.warning("broker on %s accepts ANONYMOUS clients from the network (--allow-anonymous)", host)
        return True
    raise ConfigError(
        f"refusing to bind {host} without a password file: anyone on the network could use the fabric. "
        "Give --password-file (see `edge-agent provision render`) or pass --allow-anonymous explicitly."
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (for tests and `--port 0`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Return once something accepts TCP connections on 127.0.0.1:`port`; fail early if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the broker process exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")
