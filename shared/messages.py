"""Every payload of the fabric (DESIGN §3) as a frozen pydantic model, and the one codec.

Each message carries ``kind`` (the discriminator) and ``v`` (schema version). MQTT 3.1.1 has no properties, so
correlation ids, reply topics and deadlines travel in the JSON payload. `decode` turns bytes into a message or
raises `MessageError`; `encode` turns a message into bytes.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, ClassVar, Literal, TypeGuard, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    model_serializer,
    model_validator,
)

from shared.errors import MessageError
from shared.ids import validate_id, validate_publish_topic

SCHEMA_VERSION: Literal[1] = 1
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_NESTING_DEPTH = 32

Id = Annotated[str, AfterValidator(validate_id)]
PublishTopic = Annotated[str, AfterValidator(validate_publish_topic)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
Text = Annotated[str, Field(max_length=200_000)]
Tag = Annotated[str, Field(min_length=1, max_length=64)]

# The names a message may carry, one alias each, so code that builds a message can say which names it means.
# (`Literal` nests: `Literal[RunRefusal, "timeout"]` is the flat union of both.)

RunRefusal = Literal["bad_request", "busy"]
"""Why an agent refuses a run request (its `ErrorReply.code`); the router records it as the run's `ErrorKind`."""

ErrorKind = Literal[
    RunRefusal,
    "timeout",
    "backend_error",
    "payment_required",
    "server_error",
    "logic_error",
    "cancelled",
]
"""Why a run failed (`RunResult.error`); `shared.errors.BackendError.kind` names the backend's ones."""

ErrorCode = Literal[
    RunRefusal,
    "timeout",  # the task's deadline passed
    "no_agents",
    "internal_error",
    "too_large",  # above an account's cap (cot_count, plan_k), or an answer above the fabric's message size
    "rate_limited",  # the account already has its most tasks in flight
    "forbidden",  # the request names another account's reply topic or client id
]
"""What an `ErrorReply` may say went wrong: every code the kit sends (decoding refuses any other)."""

NodeStatus = Literal["online", "offline", "draining"]
RouterStatus = Literal["online", "offline"]
Purpose = Literal["plan", "solve"]
"""What a run is for: a plan of the task, or the answer of a step."""
ChunkPhase = Literal["token", "progress"]
"""What a `TaskChunk` carries: tokens of a single run, or a line of a vote's progress."""

_ERROR_KINDS: frozenset[str] = frozenset(get_args(ErrorKind))


def is_error_kind(name: str) -> TypeGuard[ErrorKind]:
    """Whether `name` is a run error kind the wire knows (a backend plugin may name one it does not)."""
    return name in _ERROR_KINDS


class WireModel(BaseModel):
    """Base of every wire payload: immutable, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class LeftOutWhenEmpty(WireModel):
    """A message whose newer optional fields are left out of the JSON while empty (None or ""), so a message that
    does not use them is the bytes it always was, and a component of an earlier release, which refuses unknown
    fields, still reads it (a node of the previous kit must read the desired state that upgrades it)."""

    LEFT_OUT_WHEN_EMPTY: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _without_empty_new_fields(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name in self.LEFT_OUT_WHEN_EMPTY:
                if data.get(name, 0) in (None, ""):
                    del data[name]
        return data


class SiteAware(LeftOutWhenEmpty):
    """A message with an optional `site`: left out of the JSON while unset, so a one-site fleet sends the bytes it
    always sent (and a component of an earlier release, which refuses unknown fields, still reads them)."""

    LEFT_OUT_WHEN_EMPTY: ClassVar[tuple[str, ...]] = ("site",)


# --- nodes ------------------------------------------------------------------------------------------------


ConstraintKind = Literal["json_schema", "regex", "choice"]
CONSTRAINT_KINDS: tuple[ConstraintKind, ...] = get_args(ConstraintKind)


def is_constraint_kind(name: str) -> TypeGuard[ConstraintKind]:
    """Whether `name` is an output constraint kind the wire knows (a backend plugin may name one it does not)."""
    return name in CONSTRAINT_KINDS


class OutputConstraint(WireModel):
    """What a model's output may be: valid JSON against a schema, a full match of a regular expression, or one
    of a few strings. Engines that can constrain decoding (llama.cpp grammars, `response_format`) produce only
    valid output; `shared.constraints` builds, checks and canonicalises these."""

    type: ConstraintKind
    json_schema: dict[str, Any] | None = None
    pattern: str | None = Field(default=None, min_length=1, max_length=2000)
    choices: tuple[Annotated[str, Field(min_length=1, max_length=500)], ...] = Field(default=(), max_length=256)
    name: str = Field(default="answer", max_length=64)  # a schema's name (OpenAI's json_schema.name)

    @model_validator(mode="after")
    def _one_body(self) -> OutputConstraint:
        present = {"json_schema": self.json_schema is not None, "regex": self.pattern is not None}
        present["choice"] = bool(self.choices)
        if not present[self.type] or sum(present.values()) != 1:
            body = {"json_schema": "json_schema", "regex": "pattern", "choice": "choices"}[self.type]
            raise ValueError(f"a {self.type} constraint carries exactly its own {body!r} field")
        return self


class AgentInfo(WireModel):
    """One agent hosted by a node, as announced in its beacon."""

    agent_id: Id
    persona: str = ""
    capabilities: tuple[Tag, ...] = ()
    backend: str
    backend_reason: str = ""
    model: str
    max_in_flight: int = Field(ge=1, le=1024)
    tokens_per_second: NonNegative | None = None
    description: str = Field(default="", max_length=4000)
    cost_per_1k_tokens: NonNegative | None = None  # the agent's price (config, else its backend's default)
    constraints: tuple[ConstraintKind, ...] = ()  # the output constraints its backend honours while decoding


Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ModelRef(WireModel):
    """A model file by content (sha256 + size; the name is for people), and where else to get it.

    `url` is the only place a node may fetch it from outside the fabric: without it, peers only.
    """

    name: str = Field(min_length=1, max_length=200)
    sha256: Sha256
    size_bytes: int = Field(ge=1)
    url: str | None = Field(default=None, max_length=2000)


KIT_DISTRIBUTION = "symphony_edge"
# {distribution}-{version}(-{build})?-{python}-{abi}-{platform}.whl (PEP 427), the distribution normalised
_WHEEL_NAME = re.compile(r"^([A-Za-z0-9_.]+)-([A-Za-z0-9_.!+]+)(-\d[A-Za-z0-9_]*)?-[\w.]+-[\w.]+-[\w.]+\.whl$")


def wheel_version(name: str) -> str:
    """The version in a kit wheel's file name; ValueError when it is not a wheel of symphony-edge."""
    matched = _WHEEL_NAME.match(name)
    if matched is None:
        raise ValueError(f"{name!r} is not a wheel file name (name-version-python-abi-platform.whl)")
    if matched.group(1).lower().replace(".", "_").replace("-", "_") != KIT_DISTRIBUTION:
        raise ValueError(f"{name!r} is not a wheel of symphony-edge")
    return matched.group(2)


class NodeBeacon(SiteAware):
    """Retained birth (online), death (offline, also the MQTT Will) or `draining` certificate of a node.

    A draining node is alive and finishes its runs in flight, but routers send it no new ones.
    """

    LEFT_OUT_WHEN_EMPTY: ClassVar[tuple[str, ...]] = ("site", "desired_kit")  # read by routers of the kit before
    kind: Literal["node_beacon"] = "node_beacon"
    v: Literal[1] = SCHEMA_VERSION
    node_id: Id
    epoch: int = Field(ge=0)
    instance_id: Id
    status: NodeStatus
    agents: tuple[AgentInfo, ...] = ()
    software_version: str = ""
    host: str = ""
    sent_at: float = 0.0
    site: Id | None = None  # where the node lives (None: the default site); see docs/sites.md
    generation: int = Field(default=0, ge=0)  # the desired-state generation it runs (0: its own config file)
    desired_generation: int = Field(default=0, ge=0)  # the newest desired generation it has seen
    desired_error: str = Field(default="", max_length=2000)  # why desired_generation does not run (empty: it does)
    drain_requested: bool = False  # an operator asked it to drain (`edge-agent drain`)
    models: tuple[ModelRef, ...] = Field(default=(), max_length=256)  # model files it holds and serves to peers
    model_server: str = Field(default="", max_length=300)  # http://host:port/ of its model server ("" : none)
    desired_kit: str = Field(default="", max_length=64)  # the kit version its desired state names ("": none named)


class AgentState(WireModel):
    """Dynamic state of one agent: what routing reads besides the beacon."""

    agent_id: Id
    load: Fraction
    in_flight: int = Field(ge=0)
    queue_length: int = Field(ge=0)
    latency_ema_ms: NonNegative = 0.0
    available: bool = True
    runs: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    tokens_per_second: NonNegative | None = None
    latency_p50_ms: NonNegative | None = None
    latency_p95_ms: NonNegative | None = None


class NodeState(WireModel):
    kind: Literal["node_state"] = "node_state"
    v: Literal[1] = SCHEMA_VERSION
    node_id: Id
    epoch: int = Field(ge=0)
    agents: tuple[AgentState, ...] = ()
    sent_at: float = 0.0


class RouterPresence(SiteAware):
    """Retained presence of a router (online, or offline as its Will)."""

    kind: Literal["router_presence"] = "router_presence"
    v: Literal[1] = SCHEMA_VERSION
    router_id: Id
    instance_id: Id
    epoch: int = Field(ge=0)
    status: RouterStatus
    sent_at: float = 0.0
    site: Id | None = None  # the site the router serves (None: the default site)


# --- tasks -----------------------------------------------------------------------------------------------


class TaskOptions(WireModel):
    """Per-task knobs of the pipeline."""

    plan_k: int = Field(default=1, ge=1, le=8)
    plan_mode: Literal["decompose", "chains"] = "decompose"
    cot_count: int = Field(default=3, ge=1, le=9)
    top_l: int = Field(default=3, ge=1, le=16)
    deadline_s: float = Field(default=120.0, gt=0.0, le=3600.0)
    run_timeout_s: float | None = Field(default=None, gt=0.0, le=3600.0)
    selection: Literal["registry", "bid"] = "registry"
    max_tokens: int = Field(default=256, ge=1, le=8192)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    benchmark: str | None = Field(default=None, max_length=64)
    difficulty: Literal["simple", "hard"] | None = None
    gold_answer: str | None = Field(default=None, max_length=10_000)
    budget: NonNegative | None = None  # most a run may cost, in cost units (cost_per_1k_tokens x tokens / 1000)
    stream: bool = False  # stream the tokens of a single-run task (TaskChunk), progress of a vote
    agent_id: Id | None = None  # run on this agent only (a direct run, e.g. the gateway's `agent:<id>` models)
    # summary (the default): only the answered / failed event; full: every step (`submit` and followers ask)
    trace: Literal["full", "summary"] = "summary"
    output: OutputConstraint | None = None  # the last step's whole output is constrained (e.g. JSON to a schema)
    answer: OutputConstraint | None = None  # each run reasons freely, then gives an answer constrained to this


class TaskRequest(SiteAware):
    """A question for the fabric, published on ``task/submit/{client}``.

    The router answers on ``reply/{client}``, the account of the submit topic; `reply_topic` and `client_id`
    are optional, and a task that sets them to anything else is refused (`forbidden`), see docs/tenancy.md.
    """

    kind: Literal["task_request"] = "task_request"
    v: Literal[1] = SCHEMA_VERSION
    task_id: Id
    query: str = Field(min_length=1, max_length=100_000)
    requirements: tuple[Tag, ...] = ()
    reply_topic: PublishTopic | None = None
    client_id: str = Field(default="", max_length=128)
    options: TaskOptions = TaskOptions()
    context: tuple[Text, ...] = Field(default=(), max_length=64)  # earlier turns of a conversation, oldest first
    sent_at: float = 0.0
    site: Id | None = None  # the submitter's site: its routers own the task and prefer its agents


class SamplingOptions(WireModel):
    max_tokens: int = Field(default=256, ge=1, le=8192)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    seed: int | None = None


class RunRequest(WireModel):
    """One model run asked of one agent, published on ``agent/{agent_id}/run``."""

    kind: Literal["run_request"] = "run_request"
    v: Literal[1] = SCHEMA_VERSION
    dispatch_id: Id
    task_id: Id
    agent_id: Id
    purpose: Purpose = "solve"
    subtask: str = Field(min_length=1, max_length=100_000)
    context: tuple[Text, ...] = ()
    instructions: str | None = Field(default=None, max_length=20_000)
    sampling: SamplingOptions = SamplingOptions()
    deadline_s: float = Field(default=60.0, gt=0.0, le=3600.0)
    reply_topic: PublishTopic
    stream: bool = False  # send RunChunks of the tokens as they come (the RunResult stays authoritative)
    sent_at: float = 0.0
    constraint: OutputConstraint | None = None  # the whole output must satisfy it
    answer_constraint: OutputConstraint | None = None  # free reasoning, then an answer that satisfies it


class RunChunk(WireModel):
    """Tokens of a streamed run, in order (`seq` from 0), sent to the run request's reply topic."""

    kind: Literal["run_chunk"] = "run_chunk"
    v: Literal[1] = SCHEMA_VERSION
    dispatch_id: Id
    task_id: Id
    agent_id: Id
    seq: int = Field(ge=0)
    text: Text
    tokens: int = Field(default=0, ge=0)


class RunCancel(WireModel):
    """Stop a run (early-stopped vote, passed deadline, client gone), sent on the agent's run topic.

    It travels on the same topic as the RunRequest, so the broker delivers it after the request it cancels.
    """

    kind: Literal["run_cancel"] = "run_cancel"
    v: Literal[1] = SCHEMA_VERSION
    dispatch_id: Id
    task_id: Id
    agent_id: Id
    reason: str = Field(default="", max_length=200)


class RunResult(WireModel):
    """What an agent answers to a RunRequest (on the request's reply topic)."""

    kind: Literal["run_result"] = "run_result"
    v: Literal[1] = SCHEMA_VERSION
    dispatch_id: Id
    task_id: Id
    agent_id: Id
    node_id: Id
    text: Text = ""
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    latency_ms: NonNegative = 0.0
    queued_ms: NonNegative = 0.0
    error: ErrorKind | None = None
    error_message: str = Field(default="", max_length=4000)
    answer: Text | None = None  # the constrained answer of a run asked for one (RunRequest.answer_constraint)

    @property
    def ok(self) -> bool:
        return self.error is None


class BidRequest(WireModel):
    """The seed's beacon round: a router asks agents to bid for a requirement."""

    kind: Literal["bid_request"] = "bid_request"
    v: Literal[1] = SCHEMA_VERSION
    request_id: Id
    task_id: Id
    requirement: str = Field(max_length=20_000)
    required_tags: tuple[Tag, ...] = ()
    reply_topic: PublishTopic
    deadline_s: float = Field(default=0.5, gt=0.0, le=60.0)


class Bid(WireModel):
    kind: Literal["bid"] = "bid"
    v: Literal[1] = SCHEMA_VERSION
    request_id: Id
    agent_id: Id
    node_id: Id
    match_score: Fraction
    load: Fraction
    latency_ms: NonNegative
    available: bool


TaskEventName = Literal[
    "received",
    "planned",
    "screened",
    "dispatched",
    "result",
    "redispatched",
    "voted",
    "rewarded",
    "answered",
    "failed",
    "resent",
    "placed",
]


class TaskEvent(WireModel):
    """One step of a task's trace, published on ``task/{client_id}/{task_id}/events`` (no gold answer)."""

    kind: Literal["task_event"] = "task_event"
    v: Literal[1] = SCHEMA_VERSION
    task_id: Id
    router_id: Id
    event: TaskEventName
    at: float
    data: dict[str, Any] = Field(default_factory=dict)


class BallotSummary(WireModel):
    agent_id: str
    answer: str
    weight: float
    latency_ms: float = 0.0


class SubtaskSummary(WireModel):
    index: int
    text: str
    answer: str
    ballots: tuple[BallotSummary, ...] = ()


class TaskAnswer(WireModel):
    """The final, voted answer of a task, on the client's reply topic."""

    kind: Literal["task_answer"] = "task_answer"
    v: Literal[1] = SCHEMA_VERSION
    task_id: Id
    router_id: Id
    answer: str
    final_text: Text = ""
    plan: tuple[str, ...] = ()
    subtasks: tuple[SubtaskSummary, ...] = ()
    elapsed_ms: NonNegative = 0.0
    replayed: bool = False
    prompt_tokens: int = Field(default=0, ge=0)  # over every run of the task
    completion_tokens: int = Field(default=0, ge=0)
    finish_reason: Literal["stop", "length"] = "stop"  # "length": the winning run hit max_tokens


class TaskChunk(WireModel):
    """Part of a streamed task on the client's reply topic: tokens of a single run, or progress of a vote."""

    kind: Literal["task_chunk"] = "task_chunk"
    v: Literal[1] = SCHEMA_VERSION
    task_id: Id
    seq: int = Field(ge=0)
    phase: ChunkPhase = "token"
    text: Text
    dispatch_id: str = Field(default="", max_length=256)


class TaskCancel(WireModel):
    """A client gave up on a task (published on ``task/submit/{client}``, after the request it cancels)."""

    kind: Literal["task_cancel"] = "task_cancel"
    v: Literal[1] = SCHEMA_VERSION
    task_id: Id
    client_id: str = Field(default="", max_length=128)
    reason: str = Field(default="", max_length=200)


class ErrorReply(WireModel):
    """An error that crosses the network: a message, never an exception."""

    kind: Literal["error_reply"] = "error_reply"
    v: Literal[1] = SCHEMA_VERSION
    code: ErrorCode
    message: str = Field(max_length=4000)
    task_id: str | None = Field(default=None, max_length=256)
    dispatch_id: str | None = Field(default=None, max_length=256)


class LedgerEntry(WireModel):
    """A router's retained claim on a task (`running`) or its answer (`answered`), on ``ledger/{task_id}``.

    Router-only: every router reads the ledger, so whichever router owns a task id later replays the same answer,
    and no router starts a task that another live router instance is running.
    """

    kind: Literal["ledger_entry"] = "ledger_entry"
    v: Literal[1] = SCHEMA_VERSION
    task_id: Id
    router_id: Id
    instance_id: Id
    client_id: Id
    status: Literal["running", "answered"]
    answer: TaskAnswer | None = None
    at: float = Field(ge=0.0)


class RebirthRequest(WireModel):
    """A router asks every live node to publish its beacon again (Sparkplug's rebirth), for brokers that keep
    no retained message, keep it node-local, or send none to wildcard filters. Nodes answer within `spread_s`."""

    kind: Literal["rebirth_request"] = "rebirth_request"
    v: Literal[1] = SCHEMA_VERSION
    router_id: Id
    spread_s: float = Field(default=1.0, ge=0.0, le=60.0)
    sent_at: float = 0.0


class CapabilitySummary(WireModel):
    """One line of a site summary, for the agents with one set of capabilities and one model: how much of it
    the site has, how fast and how well it serves."""

    capabilities: tuple[Tag, ...] = Field(default=(), max_length=32)  # (): agents that announce none
    model: str = Field(max_length=256)
    agents_live: int = Field(ge=0)
    slots: int = Field(ge=0)  # runs the live agents take at once (their max_in_flight), busy or not
    free_slots: int = Field(ge=0)
    latency_p50_ms: NonNegative = 0.0
    latency_p95_ms: NonNegative = 0.0
    reliability: Fraction = 0.5  # the site router's learned reliability of these agents (their mean)
    runs: int = Field(default=0, ge=0)  # how many rewards that was learned from


class SiteSummary(WireModel):
    """A site router's retained summary of its site, on ``site/{site}/summary``: what crosses the WAN links in
    place of every board's beacon and state. Routers elsewhere route to the site by it (the site's `site:{site}`
    agent), and the site's router places the run on one of its boards."""

    kind: Literal["site_summary"] = "site_summary"
    v: Literal[1] = SCHEMA_VERSION
    site: Id
    router_id: Id
    epoch: int = Field(ge=0)
    seq: int = Field(ge=0)
    entries: tuple[CapabilitySummary, ...] = Field(default=(), max_length=4096)
    sent_at: float = 0.0


class TraceRequest(WireModel):
    """An observer (the dashboard) asks the routers to trace every task they start in full for `duration_s`, and
    asks again while it watches; otherwise a task traces a summary unless its own client asks for more."""

    kind: Literal["trace_request"] = "trace_request"
    v: Literal[1] = SCHEMA_VERSION
    observer_id: Id
    duration_s: float = Field(default=30.0, gt=0.0, le=300.0)
    sent_at: float = 0.0


class DesiredAgent(WireModel):
    """One agent of a node's desired state: what `AgentConfig` says in node.yaml, with the model by content."""

    agent_id: Id
    preset: str | None = Field(default=None, max_length=64)
    backend: str = Field(default="auto", min_length=1, max_length=64)
    model: ModelRef | None = None  # a model file (llama.cpp, MLX); None: `model_name` (echo, openai)
    model_name: str = Field(default="default", min_length=1, max_length=200)
    max_in_flight: int = Field(default=1, ge=1, le=64)
    backend_settings: dict[str, Any] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)  # other AgentConfig fields (capabilities, max_tokens...)


class DesiredState(LeftOutWhenEmpty):
    """What an operator wants a node to run, retained on ``desired/{node_id}`` (operators only may write it).

    `generation` grows with every change (a rollback too); the node reports the generation it runs in its beacon.
    `kit` names a wheel of the kit by content, like a model: the node fetches it from peers, installs it through
    its privileged updater and restarts before it applies the agents; its beacon's `software_version` says which
    kit runs.
    """

    LEFT_OUT_WHEN_EMPTY: ClassVar[tuple[str, ...]] = ("kit",)  # a node of the kit before reads one without a kit
    kind: Literal["desired_state"] = "desired_state"
    v: Literal[1] = SCHEMA_VERSION
    node_id: Id
    generation: int = Field(ge=1)
    agents: tuple[DesiredAgent, ...] = Field(default=(), max_length=64)
    kit: ModelRef | None = (
        None  # a symphony-edge wheel to run (None: keep the installed kit); see docs/fleet-operations.md
    )
    issued_by: str = Field(default="", max_length=128)
    issued_at: float = 0.0


class NodeControl(WireModel):
    """An operator's standing order to a node, retained on ``control/{node_id}``: drain (true) or serve (false)."""

    kind: Literal["node_control"] = "node_control"
    v: Literal[1] = SCHEMA_VERSION
    node_id: Id
    drain: bool
    reason: str = Field(default="", max_length=200)
    issued_at: float = 0.0


Message = (
    NodeBeacon
    | NodeState
    | RouterPresence
    | TaskRequest
    | RunRequest
    | RunResult
    | RunChunk
    | RunCancel
    | BidRequest
    | Bid
    | TaskEvent
    | TaskAnswer
    | TaskChunk
    | TaskCancel
    | ErrorReply
    | LedgerEntry
    | RebirthRequest
    | SiteSummary
    | TraceRequest
    | DesiredState
    | NodeControl
)
_MESSAGE_ADAPTER: TypeAdapter[Message] = TypeAdapter(Annotated[Message, Field(discriminator="kind")])
MESSAGE_TYPES: dict[str, type[WireModel]] = {model.model_fields["kind"].default: model for model in Message.__args__}
M = TypeVar("M", bound=WireModel)


def encode(message: WireModel) -> bytes:
    """Serialise a message to compact JSON bytes."""
    return message.model_dump_json(exclude_none=False).encode()


def decode(
    payload: bytes | str,
    expected: type[M] | tuple[type[WireModel], ...] | None = None,
    max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> Any:
    """Decode `payload` into a message (of type `expected`, or of one of the types `expected` names, when given),
    or raise `MessageError`. A message of another kind is refused before it is validated."""
    try:
        raw = payload.encode() if isinstance(payload, str) else payload
    except UnicodeEncodeError:  # a str with lone surrogates has no UTF-8 form
        raise MessageError("payload is not valid UTF-8 text") from None
    if len(raw) > max_bytes:
        raise MessageError(f"payload of {len(raw)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise MessageError(f"payload is not valid UTF-8 JSON: {str(error)[:200]}") from None
    if _brackets(raw) > MAX_NESTING_DEPTH and _depth(data) > MAX_NESTING_DEPTH:
        raise MessageError(f"payload is nested deeper than {MAX_NESTING_DEPTH} levels")
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        raise MessageError("payload is not a JSON object with a string 'kind'")
    kind = data["kind"]
    if kind not in MESSAGE_TYPES:
        raise MessageError(f"unknown message kind {kind[:64]!r}")
    model = MESSAGE_TYPES[kind]
    if expected is not None and model is not expected and (not isinstance(expected, tuple) or model not in expected):
        wanted = expected if isinstance(expected, tuple) else (expected,)
        raise MessageError(f"expected a {' or '.join(kind_model.__name__ for kind_model in wanted)}, got kind {kind!r}")
    try:
        return _MESSAGE_ADAPTER.validate_python(data)
    except ValidationError as error:
        raise MessageError(f"invalid {kind}: {_summarise(error)}") from None


def peek_reply_route(payload: bytes) -> tuple[str | None, str | None, str | None]:
    """Best effort (reply topic, task id, dispatch id) of a payload that failed to decode, to answer it."""
    try:
        data = json.loads(payload[:DEFAULT_MAX_PAYLOAD_BYTES])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        # Broken JSON (e.g. truncated) may still name its route in plain string fields: answer it if so.
        text = payload[:DEFAULT_MAX_PAYLOAD_BYTES].decode("utf-8", errors="replace")
        data = {name: found.group(1) for name in _ROUTE_FIELDS if (found := _string_field(name).search(text))}
    if not isinstance(data, dict):
        return None, None, None
    fields = [data.get(name) for name in _ROUTE_FIELDS]
    reply_topic, task_id, dispatch_id = (value if isinstance(value, str) else None for value in fields)
    try:
        reply_topic = validate_publish_topic(reply_topic) if reply_topic else None
    except ValueError:
        reply_topic = None
    return reply_topic, _short(task_id), _short(dispatch_id)


_ROUTE_FIELDS = ("reply_topic", "task_id", "dispatch_id")


def _string_field(name: str) -> re.Pattern[str]:
    """A JSON string field without escapes, e.g. ``"reply_topic": "a/b"``."""
    return re.compile(rf'"{name}"\s*:\s*"([^"\\]*)"')


def _reject_constant(name: str) -> Any:
    """NaN and Infinity are not JSON: encode() could not write them back, so they are refused on the way in."""
    raise ValueError(f"{name} is not a valid JSON number")


def _short(value: str | None) -> str | None:
    return value[:256] if value else None


def _summarise(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        location = ".".join(str(part) for part in item["loc"]) or "payload"
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


def _brackets(raw: bytes) -> int:
    """Opening brackets in the payload: a bound on its nesting depth, counted in C (most payloads need no walk)."""
    return raw.count(b"{") + raw.count(b"[")


def _depth(value: Any, level: int = 0) -> int:
    """Nesting depth of decoded JSON, stopping early once it is too deep."""
    if level > MAX_NESTING_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(item, level + 1) for item in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(item, level + 1) for item in value), default=level + 1)
    return level
