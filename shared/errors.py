"""The kit's error tree.

    SymphonyError
    ├── MessageError        a payload that is not a valid message (bad JSON, unknown kind, wrong types, too big)
    ├── TopicError          an id that would break a topic (empty, wildcard, '/', control characters, too long)
    ├── ConfigError         a node config that cannot be loaded (names the file and the field)
    └── TransportError      the MQTT connection failed or was refused

Errors that cross the network are messages (`ErrorReply`), never exceptions.
"""

from __future__ import annotations


class SymphonyError(Exception):
    """Root of every error the kit raises on purpose."""


class MessageError(SymphonyError, ValueError):
    """A payload could not be decoded into a wire message."""


class TopicError(SymphonyError, ValueError):
    """An id cannot be used inside an MQTT topic."""


class ConfigError(SymphonyError):
    """A configuration file or value is invalid."""


class TransportError(SymphonyError):
    """The MQTT connection could not be established or was refused."""
