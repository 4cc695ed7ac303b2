"""The kit's error tree: every error the kit raises on purpose derives from `SymphonyError`.

The classes below the first level are defined here unless a module is named; errors of a room live in that room
and still hang from this root, so `except SymphonyError` catches every failure the kit means (the CLI turns them
into a one-line message). Where callers also catch a builtin, it stays a second base (marked ValueError).

    SymphonyError
    ├── MessageError (ValueError)   not a valid message payload (bad JSON, unknown kind, wrong types, too big)
    │   └── PayloadTooLarge         shared.mqtt: above the client's max_payload_bytes, refused before it is sent
    ├── TopicError (ValueError)     an id unfit for a topic (empty, wildcard, '/', control characters, too long)
    ├── ConfigError                 a node config that cannot be loaded (names the file and the field)
    │   └── ProvisioningError       provisioning.errors: an inventory or fleet file cannot become node configs
    ├── TransportError              the MQTT connection failed or was refused
    │   └── DuplicateNodeError      edge_agent.runtime.node: another live node already uses this node id
    ├── BackendError                a model backend failed; ``kind``: the wire error kind of its ``RunResult``
    │   ├── BackendTimeout       "timeout"           the model or server did not answer in time
    │   ├── BackendUnavailable   "backend_error"     model file missing/corrupt, library not installed
    │   │   └── ModelError       model_store: ModelNotFound, CorruptModel, UnpinnedModelURL, ModelFetchError
    │   ├── PaymentRequired      "payment_required"  HTTP 402 from a paid endpoint
    │   ├── ServerError          "server_error"      HTTP 5xx or an unexpected failure inside the engine
    │   └── LogicError           "logic_error"       bad request (other 4xx) or a malformed reply
    ├── ConstraintError (ValueError)   shared.constraints: an output constraint that cannot be built or compiled
    ├── Unauthorized                   shared.http_auth: no valid credentials (HTTP 401)
    ├── TaskFailed, TaskTimeout        shared.client: the fabric answered with an ErrorReply / not in time
    ├── PacketTooLarge                 broker.amqtt_fixes: a packet above the broker's limit (connection closed)
    ├── QueueFull                      edge_agent.runtime.worker: the agent's queue is full (answered "busy")
    ├── UnknownPersona (ValueError)    edge_agent.personas: no preset persona has that name
    ├── MetricsUnavailable             edge_agent.runtime.prometheus: no prometheus-client, or the port is taken
    ├── NoAgentsError                  router.pipeline: no live agent can take the task (answered "no_agents")
    ├── PlanParseError (ValueError)    router.planning: a planner's output holds no usable step
    ├── RouterIdentityError (ValueError)  router.identity: the router id file holds no usable id
    ├── ForeignHost                    fleet_observe.web: a loopback dashboard asked under another host name
    ├── KitRefused                     edge_agent.updater: a kit wheel the desired state does not name (not installed)
    ├── the gateway's, each answered in OpenAI's error shape (fleet_gateway):
    │   GatewayError (app), Refused (limits), QuotaExceeded and CapExceeded (quotas),
    │   UnknownModel and BadRequest (openai_api), InvalidReply (structured)
    ├── StreamError (ValueError)       bench.data.stream: a benchmark stream that cannot be built as asked
    └── DataError                      bench.data.fetch: DownloadFailed, VerificationFailed

Left outside on purpose: `model_store.peers._Busy`, private control flow (a peer answered 503: try another).
Errors that cross the network are messages (`ErrorReply`, whose `code` is a `shared.messages.ErrorCode`), never
exceptions.
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
