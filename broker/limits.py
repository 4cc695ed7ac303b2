"""What one peer may cost a broker we host, before and after it authenticates (both brokers).

- `message_size_limit`: the largest PUBLISH payload relayed (mosquitto's option of that name). A packet larger
  than the payload limit plus the largest topic (`max_packet_bytes`) is not even read: the embedded broker and
  mosquitto (`max_packet_size`) close the connection at its header, so a 64 MiB publish costs neither memory.
- `connect_timeout_s`: a TCP connection that has not sent a complete CONNECT within this many seconds is closed
  (embedded broker; mosquitto's is fixed, see docs/threat-model-broker.md).
- `unauthenticated_per_address`: connections from one source address that have not yet authenticated; more are
  closed at once, so sockets that never send CONNECT cannot hold every slot of the listener (embedded broker).
"""

from __future__ import annotations

from dataclasses import dataclass

MQTT_TOPIC_OVERHEAD = 65_535 + 2 + 2 + 5  # the longest topic, its length, a packet id and the fixed header
DEFAULT_MESSAGE_SIZE_LIMIT = 1024 * 1024  # the same as a FabricClient's max_payload_bytes


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-connection limits of a broker we host (ValueError on nonsense)."""

    message_size_limit: int = DEFAULT_MESSAGE_SIZE_LIMIT
    connect_timeout_s: float = 10.0
    unauthenticated_per_address: int = 32
    max_connections: int = 1000

    def __post_init__(self) -> None:
        if self.message_size_limit < 1024:
            raise ValueError("message_size_limit must be at least 1024 bytes")
        if self.connect_timeout_s <= 0:
            raise ValueError("connect_timeout_s must be positive")
        if self.unauthenticated_per_address < 1 or self.max_connections < 1:
            raise ValueError("connection caps must be at least 1")

    @property
    def max_packet_bytes(self) -> int:
        """The largest MQTT packet read at all: the payload limit plus the longest topic and the headers."""
        return self.message_size_limit + MQTT_TOPIC_OVERHEAD
