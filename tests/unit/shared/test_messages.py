"""The wire codec: every message round-trips, and every kind of bad input is exactly a MessageError."""

from __future__ import annotations

import json
from typing import get_args

import pytest
from pydantic import ValidationError

from shared.errors import MessageError
from shared.messages import (
    MAX_NESTING_DEPTH,
    MESSAGE_TYPES,
    AgentInfo,
    AgentState,
    BallotSummary,
    Bid,
    BidRequest,
    CapabilitySummary,
    DesiredAgent,
    DesiredState,
    ErrorCode,
    ErrorReply,
    LedgerEntry,
    ModelRef,
    NodeBeacon,
    NodeControl,
    NodeState,
    RebirthRequest,
    RouterPresence,
    RunCancel,
    RunChunk,
    RunRequest,
    RunResult,
    SamplingOptions,
    SiteSummary,
    SubtaskSummary,
    TaskAnswer,
    TaskCancel,
    TaskChunk,
    TaskEvent,
    TaskOptions,
    TaskRequest,
    TraceRequest,
    WireModel,
    decode,
    encode,
    peek_reply_route,
)

REPLY = "symphony/t/reply/client-1"

SAMPLES: list[WireModel] = [
    NodeBeacon(
        node_id="node-1",
        epoch=7,
        instance_id="abc123",
        status="online",
        agents=(
            AgentInfo(
                agent_id="node-1-math",
                persona="math",
                capabilities=("math", "reasoning"),
                backend="llamacpp",
                model="SmolLM2",
                max_in_flight=2,
                tokens_per_second=131.5,
            ),
        ),
        software_version="0.1.0",
        host="board",
        sent_at=1.5,
    ),
    NodeState(
        node_id="node-1",
        epoch=7,
        agents=(
            AgentState(
                agent_id="node-1-math",
                load=0.5,
                in_flight=1,
                queue_length=2,
                latency_ema_ms=12.5,
                runs=3,
                errors=1,
                latency_p50_ms=10.0,
                latency_p95_ms=20.0,
            ),
        ),
    ),
    RouterPresence(router_id="router-1", instance_id="i1", epoch=3, status="offline"),
    TaskRequest(
        task_id="task-1",
        query="What is 2 + 2?",
        requirements=("math",),
        reply_topic=REPLY,
        client_id="client-1",
        options=TaskOptions(plan_k=2, cot_count=5, deadline_s=30.0, gold_answer="4", difficulty="simple"),
    ),
    RunRequest(
        dispatch_id="d-1",
        task_id="task-1",
        agent_id="node-1-math",
        purpose="plan",
        subtask="Add two and two.",
        context=("earlier step",),
        instructions="Be brief.",
        sampling=SamplingOptions(max_tokens=64, temperature=0.0, seed=3),
        reply_topic=REPLY,
    ),
    RunResult(
        dispatch_id="d-1",
        task_id="task-1",
        agent_id="node-1-math",
        node_id="node-1",
        text="4",
        prompt_tokens=10,
        completion_tokens=1,
        latency_ms=3.25,
        error=None,
    ),
    RunResult(
        dispatch_id="d-2",
        task_id="task-1",
        agent_id="node-1-math",
        node_id="node-1",
        error="timeout",
        error_message="no answer within 1 s",
    ),
    BidRequest(request_id="b-1", task_id="task-1", requirement="math", required_tags=("math",), reply_topic=REPLY),
    Bid(request_id="b-1", agent_id="a-1", node_id="node-1", match_score=1.0, load=0.0, latency_ms=5.0, available=True),
    TaskEvent(task_id="task-1", router_id="router-1", event="voted", at=2.0, data={"winner": "4", "votes": [1, 2]}),
    TaskAnswer(
        task_id="task-1",
        router_id="router-1",
        answer="4",
        plan=("add",),
        subtasks=(
            SubtaskSummary(
                index=0, text="add", answer="4", ballots=(BallotSummary(agent_id="a", answer="4", weight=1),)
            ),
        ),
        elapsed_ms=12.0,
    ),
    ErrorReply(code="bad_request", message="nope", task_id="task-1", dispatch_id="d-1"),
    RunChunk(dispatch_id="d-1", task_id="task-1", agent_id="node-1-math", seq=0, text="The", tokens=1),
    RunCancel(dispatch_id="d-1", task_id="task-1", agent_id="node-1-math", reason="early stop"),
    TaskChunk(task_id="task-1", seq=2, phase="progress", text="1/3 runs answered", dispatch_id="d-1"),
    TaskCancel(task_id="task-1", client_id="client-1", reason="client went away"),
    LedgerEntry(
        task_id="task-1",
        router_id="r1",
        instance_id="i1",
        client_id="alice",
        status="answered",
        answer=TaskAnswer(task_id="task-1", router_id="r1", answer="42"),
        at=1.0,
    ),
    RebirthRequest(router_id="router-1", spread_s=0.5, sent_at=3.0),
    SiteSummary(
        site="east",
        router_id="router-1",
        epoch=3,
        seq=7,
        entries=(
            CapabilitySummary(
                capabilities=("writing",), model="smollm2", agents_live=4, slots=8, free_slots=5, latency_p95_ms=90.0
            ),
        ),
    ),
    TraceRequest(observer_id="observer-1", duration_s=30.0, sent_at=4.0),
    DesiredState(
        node_id="node-1",
        generation=3,
        agents=(
            DesiredAgent(
                agent_id="node-1-writer",
                preset="writer",
                backend="llamacpp",
                model=ModelRef(name="smollm2.gguf", sha256="a" * 64, size_bytes=94_000_000),
                max_in_flight=2,
            ),
        ),
    ),
    NodeControl(node_id="node-1", drain=True, reason="maintenance"),
]


def _valid_run_request() -> dict[str, object]:
    return json.loads(encode(SAMPLES[4]))


def test_the_samples_cover_every_message_kind() -> None:
    assert {type(sample) for sample in SAMPLES} == set(MESSAGE_TYPES.values())


@pytest.mark.parametrize("message", SAMPLES, ids=lambda message: type(message).__name__)
def test_every_message_round_trips(message: WireModel) -> None:
    payload = encode(message)
    assert isinstance(payload, bytes)
    assert decode(payload) == message
    assert decode(payload, expected=type(message)) == message
    assert decode(payload.decode()) == message  # str payloads are accepted too
    data = json.loads(payload)
    assert data["kind"] == type(message).model_fields["kind"].default
    assert data["v"] == 1


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"{not json", id="malformed-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[1, 2]", id="array"),
        pytest.param(b'"run_request"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"{}", id="no-kind"),
        pytest.param(b'{"kind": 5}', id="kind-not-a-string"),
        pytest.param(b'{"kind": "launch_missiles", "v": 1}', id="unknown-kind"),
        pytest.param(b'{"kind": "error_reply", "v": 1, "code": "busy"}', id="missing-field"),
        pytest.param(b'{"kind": "error_reply", "v": 2, "code": "busy", "message": "m"}', id="wrong-version"),
        pytest.param(b'{"kind": "error_reply", "v": 1, "code": 7, "message": "m"}', id="wrong-type"),
        pytest.param(b'{"kind": "error_reply", "v": 1, "code": "", "message": "m"}', id="empty-code"),
        pytest.param(b'{"kind": "error_reply", "v": 1, "code": "oops", "message": "m"}', id="unknown-code"),
        pytest.param(b'{"kind": "error_reply", "v": 1, "code": "busy", "message": "m", "extra": 1}', id="extra-field"),
        pytest.param(b'{"kind": "error_reply", "v": 1, "code": "busy", "message": "\xff\xfe"}', id="invalid-utf8"),
        pytest.param(b"\xc3\x28", id="invalid-utf8-only"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="recursion-bomb"),
    ],
)
def test_bad_payloads_raise_message_error(payload: bytes) -> None:
    with pytest.raises(MessageError):
        decode(payload)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dispatch_id", 5),
        ("dispatch_id", ""),
        ("dispatch_id", "a/b"),
        ("agent_id", "+"),
        ("subtask", ""),
        ("sampling", "hot"),
        ("deadline_s", 0),
        ("deadline_s", "soon"),
        ("context", "not-a-list"),
        ("reply_topic", "symphony/t/reply/#"),
        ("reply_topic", ""),
        ("purpose", "dance"),
    ],
)
def test_run_request_with_a_wrong_field_raises_message_error(field: str, value: object) -> None:
    data = _valid_run_request()
    data[field] = value
    with pytest.raises(MessageError) as raised:
        decode(json.dumps(data).encode())
    assert field in str(raised.value)


@pytest.mark.parametrize("field", ["dispatch_id", "task_id", "agent_id", "subtask", "reply_topic"])
def test_run_request_without_a_required_field_raises_message_error(field: str) -> None:
    data = _valid_run_request()
    del data[field]
    with pytest.raises(MessageError, match=field):
        decode(json.dumps(data).encode())


def test_a_str_payload_that_is_not_encodable_raises_message_error() -> None:
    with pytest.raises(MessageError):
        decode('{"kind": "error_reply", "code": "busy", "message": "\ud800"}')


def test_the_size_limit_is_enforced_and_configurable() -> None:
    payload = encode(ErrorReply(code="busy", message="m" * 1000))
    assert decode(payload, max_bytes=len(payload)) == decode(payload)
    with pytest.raises(MessageError, match="exceeds"):
        decode(payload, max_bytes=len(payload) - 1)
    huge = encode(TaskEvent(task_id="t", router_id="r", event="planned", at=0.0, data={"blob": "x" * (1024 * 1024)}))
    with pytest.raises(MessageError, match="exceeds"):
        decode(huge)  # the default limit is 1 MiB
    assert decode(huge, max_bytes=2 * 1024 * 1024).data["blob"] == "x" * (1024 * 1024)


def _nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


def test_deeply_nested_json_is_refused_but_moderate_nesting_is_fine() -> None:
    shallow = {"kind": "task_event", "v": 1, "task_id": "t", "router_id": "r", "event": "planned", "at": 0.0}
    shallow["data"] = {"x": _nested(MAX_NESTING_DEPTH - 3)}
    assert isinstance(decode(json.dumps(shallow).encode()), TaskEvent)
    deep = dict(shallow, data={"x": _nested(MAX_NESTING_DEPTH + 5)})
    with pytest.raises(MessageError, match="nested"):
        decode(json.dumps(deep).encode())
    lists = dict(shallow, data={"x": json.loads("[" * 200 + "]" * 200)})
    with pytest.raises(MessageError, match="nested"):
        decode(json.dumps(lists).encode())


@pytest.mark.parametrize("message", SAMPLES[:4], ids=lambda message: type(message).__name__)
def test_decode_with_expected_rejects_another_kind(message: WireModel) -> None:
    with pytest.raises(MessageError, match="expected a RunRequest"):
        decode(encode(message), expected=RunRequest)


@pytest.mark.parametrize(
    ("payload", "route"),
    [
        (
            b'{"kind": "run_request", "reply_topic": "symphony/t/reply/c", "task_id": "t1", "dispatch_id": 4}',
            ("symphony/t/reply/c", "t1", None),
        ),
        (b'{"reply_topic": "symphony/t/reply/+", "task_id": "t1"}', (None, "t1", None)),
        (b'{"reply_topic": 3, "dispatch_id": "d1"}', (None, None, "d1")),
        (b'{"reply_topic": "a\\u0000b"}', (None, None, None)),
        (b"{broken", (None, None, None)),
        (
            b'{"kind": "run_request", "reply_topic": "symphony/t/reply/c", "task_id": "t1", "dispatch_id": "d1", ',
            ("symphony/t/reply/c", "t1", "d1"),
        ),  # truncated JSON still names its route
        (b'{"reply_topic" : "symphony/t/reply/#", "task_id": "t\\"1"', (None, None, None)),
        (b"[1]", (None, None, None)),
        (b"\xff", (None, None, None)),
        (b'{"task_id": "' + b"x" * 1000 + b'"}', (None, "x" * 256, None)),
    ],
)
def test_peek_reply_route(payload: bytes, route: tuple[str | None, str | None, str | None]) -> None:
    assert peek_reply_route(payload) == route


def test_messages_are_frozen_and_reject_extra_fields() -> None:
    reply = ErrorReply(code="busy", message="m")
    with pytest.raises(ValidationError):
        reply.code = "timeout"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        ErrorReply(code="busy", message="m", surprise=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        AgentInfo(agent_id="a", backend="echo", model="m", max_in_flight=1, colour="red")  # type: ignore[call-arg]


def test_run_result_ok_follows_the_error_field() -> None:
    assert SAMPLES[5].ok  # type: ignore[attr-defined]
    assert not SAMPLES[6].ok  # type: ignore[attr-defined]


def test_an_error_reply_carries_only_the_codes_the_kit_sends() -> None:
    for code in get_args(ErrorCode):
        reply = ErrorReply(code=code, message="m")
        assert decode(encode(reply)) == reply
    with pytest.raises(ValidationError):
        ErrorReply(code="oops", message="m")  # type: ignore[arg-type]
    with pytest.raises(MessageError, match="code"):
        decode(b'{"kind": "error_reply", "v": 1, "code": "oops", "message": "m"}')
