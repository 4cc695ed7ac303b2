"""Facts about network addresses that the broker, the gateway and the dashboard share."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True when `host` (a name or an address) only accepts connections from this machine."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
