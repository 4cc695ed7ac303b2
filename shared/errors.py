"""The kit's error tree.

    SymphonyError
    ├── MessageError        a payload that is not a valid message (bad JSON, unknown kind, wrong types, too big)
    ├── TopicError          an id that would break a topic (empty, wildcard, '/', control characters, too long)
    ├── ConfigError         a node config that cannot be loaded (names the file and the field)
    ├── TransportError      the MQTT connection failed or was refused
    └── BackendError        a model backend failed; ``kind`` is the wire error kind carried in ``RunResult``
        ├── BackendTimeout       "timeout"           the model or server did not answer in time
        ├── BackendUnavailable   "backend_error"     model file missing/corrupt, library not installed
        ├── PaymentRequired      "payment_required"  HTTP 402 from a paid endpoint
        ├── ServerError          "server_error"      HTTP 5xx or an unexpected failure inside the engine
        └── LogicError           "logic_error"       bad request (other 4xx) or a malformed reply

Errors that cross the network are messages (`ErrorReply`), never exceptions.
"""

from __future__ import annotations

from typing import ClassVar


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


class BackendError(SymphonyError):
    """Root of every error a backend raises; ``kind`` names the wire error kind."""

    kind: ClassVar[str] = "backend_error"


class BackendTimeout(BackendError):
    """The model or server did not answer before the deadline."""

    kind: ClassVar[str] = "timeout"


class BackendUnavailable(BackendError):
    """The backend cannot run here: the model file is missing or corrupt, or the library is absent."""

    kind: ClassVar[str] = "backend_error"


class PaymentRequired(BackendError):
    """The remote endpoint refused the request for lack of credit (HTTP 402)."""

    kind: ClassVar[str] = "payment_required"


class ServerError(BackendError):
    """The server or engine failed while handling a valid request (HTTP 5xx)."""

    kind: ClassVar[str] = "server_error"


class LogicError(BackendError):
    """The request was rejected as invalid (HTTP 4xx) or the reply could not be understood."""

    kind: ClassVar[str] = "logic_error"
