"""Property-based fuzzing of the wire codec: only MessageError ever escapes decode (issue 7.5)."""

from __future__ import annotations

import contextlib
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import MessageError
from shared.messages import MESSAGE_TYPES, decode, peek_reply_route

KINDS = sorted(MESSAGE_TYPES)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
)
FIELD_NAMES = ("task_id", "dispatch_id", "agent_id", "node_id", "reply_topic", "query", "epoch", "status", "options")
messages_like = st.fixed_dictionaries(
    {"kind": st.sampled_from(KINDS) | st.text(max_size=10)},
    optional={
        "v": st.integers(-1, 3) | st.text(max_size=3),
        **{name: json_values | st.sampled_from(["a/b", "+", "#", "x" * 300, "\x00", "\ud800"]) for name in FIELD_NAMES},
    },
)
FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decodes_or_refuses(payload: bytes | str) -> None:
    with contextlib.suppress(MessageError):  # anything else escaping fails the test
        decode(payload)


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes(payload: bytes) -> None:
    decodes_or_refuses(payload)
    peek_reply_route(payload)


@FAST
@given(st.text(max_size=300))
def test_arbitrary_text_including_lone_surrogates(payload: str) -> None:
    decodes_or_refuses(payload)


@FAST
@given(json_values)
def test_any_json_document(value: object) -> None:
    decodes_or_refuses(json.dumps(value).encode())


@FAST
@given(messages_like)
def test_message_shaped_objects_with_wrong_fields(value: dict[str, object]) -> None:
    payload = json.dumps(value).encode("utf-8", "surrogatepass")
    decodes_or_refuses(payload)
    reply_topic, task_id, _ = peek_reply_route(payload)
    assert reply_topic is None or ("+" not in reply_topic and "#" not in reply_topic)
    assert task_id is None or len(task_id) <= 256


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=33, max_value=200_000), st.sampled_from(["[", '{"a":']))
def test_deep_nesting(depth: int, opener: str) -> None:
    decodes_or_refuses((opener * depth).encode())
    peek_reply_route((opener * depth).encode())


def test_huge_payload_is_refused_without_parsing() -> None:
    huge = json.dumps({"kind": "task_request", "query": "x" * (2 * 1024 * 1024)}).encode()
    try:
        decode(huge)
    except MessageError as error:
        assert "exceeds" in str(error)
    else:
        raise AssertionError("a 2 MiB payload was accepted")
