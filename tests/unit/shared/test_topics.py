"""Topic builders (one table, prefix symphony/{fabric}) and the id check that keeps crafted ids out of topics."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shared.errors import TopicError
from shared.topics import Topics, validate_id, validate_publish_topic

T = Topics("f1")

BUILDERS: list[tuple[Callable[[], str], str]] = [
    (lambda: T.everything(), "symphony/f1/#"),
    (lambda: T.beacon("node-1"), "symphony/f1/beacon/node-1"),
    (lambda: T.beacons(), "symphony/f1/beacon/+"),
    (lambda: T.state("node-1"), "symphony/f1/state/node-1"),
    (lambda: T.states(), "symphony/f1/state/+"),
    (lambda: T.agent_run("node-1-math"), "symphony/f1/agent/node-1-math/run"),
    (lambda: T.router_presence("r1"), "symphony/f1/router/r1"),
    (lambda: T.router_presences(), "symphony/f1/router/+"),
    (lambda: T.router_inbox("r1"), "symphony/f1/router/r1/inbox"),
    (lambda: T.router_bids("r1"), "symphony/f1/router/r1/bids"),
    (lambda: T.bid_request(), "symphony/f1/bid/request"),
    (lambda: T.task_submit(), "symphony/f1/task/submit"),
    (lambda: T.task_events("alice", "t-9"), "symphony/f1/task/alice/t-9/events"),
    (lambda: T.client_task_events("alice"), "symphony/f1/task/alice/+/events"),
    (lambda: T.any_client_task_events("t-9"), "symphony/f1/task/+/t-9/events"),
    (lambda: T.all_task_events(), "symphony/f1/task/+/+/events"),
    (lambda: T.reply("client-1"), "symphony/f1/reply/client-1"),
]


@pytest.mark.parametrize(("build", "expected"), BUILDERS, ids=[expected for _, expected in BUILDERS])
def test_every_builder(build: Callable[[], str], expected: str) -> None:
    assert build() == expected


def test_default_fabric_and_prefix() -> None:
    assert Topics().prefix == "symphony/default"
    assert Topics("lab").prefix == "symphony/lab"
    assert Topics("lab").last_level(Topics("lab").beacon("n7")) == "n7"


ID_BUILDERS: list[Callable[[str], str]] = [
    T.beacon,
    T.state,
    T.agent_run,
    T.router_presence,
    T.router_inbox,
    T.router_bids,
    lambda bad: T.task_events(bad, "t-1"),
    lambda bad: T.task_events("alice", bad),
    T.client_task_events,
    T.any_client_task_events,
    T.reply,
]


@pytest.mark.parametrize("build", ID_BUILDERS, ids=lambda build: build.__name__)
@pytest.mark.parametrize("bad", ["", "+", "#", "a/b", "x+", "tab\there"])
def test_builders_refuse_ids_that_would_break_the_topic(build: Callable[[str], str], bad: str) -> None:
    with pytest.raises(TopicError):
        build(bad)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("", id="empty"),
        pytest.param("+", id="plus"),
        pytest.param("#", id="hash"),
        pytest.param("a/b", id="slash"),
        pytest.param("node+1", id="plus-inside"),
        pytest.param("node#", id="hash-at-end"),
        pytest.param("new\nline", id="newline"),
        pytest.param("nul\x00", id="nul"),
        pytest.param("esc\x1b", id="escape"),
        pytest.param("del\x7f", id="del"),
        # the rest of MQTT's forbidden code points (3.1.1 §1.5.3): C1 controls, non-characters, surrogates
        pytest.param("a\u0085b", id="next-line-C1"),
        pytest.param("a\x9fb", id="last-C1"),
        pytest.param("a\ufffeb", id="U+FFFE"),
        pytest.param("a\uffff", id="U+FFFF"),
        pytest.param("a\ufdd0", id="U+FDD0"),
        pytest.param("a\ufdef", id="U+FDEF"),
        pytest.param("a\U0001fffe", id="U+1FFFE"),
        pytest.param("a\U0010ffff", id="U+10FFFF"),
        pytest.param("a\ud800b", id="lone-surrogate"),
        pytest.param("x" * 129, id="129-chars"),
        pytest.param(None, id="none"),
        pytest.param(42, id="int"),
    ],
)
def test_validate_id_refuses(bad: object) -> None:
    with pytest.raises(TopicError):
        validate_id(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "good", ["n", "node-1", "jetson_orin.lab", "x" * 128, "Ünïcode-节点", "a b", "nbsp\u00a0", "\ufdcf\ufdf0", "😀"]
)
def test_validate_id_accepts_normal_ids(good: str) -> None:
    assert validate_id(good) == good


@pytest.mark.parametrize("code", range(128))
def test_every_ascii_character_in_an_id(code: int) -> None:
    """ASCII ids take a shorter check: each code point is accepted exactly when MQTT allows it in a topic level."""
    character = chr(code)
    allowed = 0x20 <= code < 0x7F and character not in "+#/"
    for candidate in (character, f"id-{character}", f"{character}-id", character * 128):
        if allowed:
            assert validate_id(candidate) == candidate
        else:
            with pytest.raises(TopicError):
                validate_id(candidate)
    publish_allowed = 0x20 <= code < 0x7F and character not in "+#"
    if publish_allowed:
        assert validate_publish_topic(f"a/{character}") == f"a/{character}"
    else:
        with pytest.raises(TopicError):
            validate_publish_topic(f"a/{character}")


def test_the_error_names_what_was_checked() -> None:
    with pytest.raises(TopicError, match="node id"):
        T.beacon("a/b")


@pytest.mark.parametrize(
    "bad", ["", "a/+/b", "a/#", "x" * 1025, "bad\x00topic", "symphony/f/reply/a\u0085b", "symphony/f/reply/a\ufffeb"]
)
def test_validate_publish_topic_refuses(bad: str) -> None:
    with pytest.raises(TopicError):
        validate_publish_topic(bad)


def test_validate_publish_topic_accepts_a_reply_topic() -> None:
    assert validate_publish_topic("symphony/f1/reply/c") == "symphony/f1/reply/c"


@pytest.mark.parametrize("bad", ["", "a/b", "+", "#"])
def test_a_fabric_name_is_an_id(bad: str) -> None:
    with pytest.raises(TopicError):
        Topics(bad)


REPLY_TOPICS = [
    ("symphony/f1/reply/alice", "alice", None),
    ("symphony/f1/router/r1/inbox", None, "r1"),
    ("symphony/f1/router/r1/bids", None, "r1"),
    ("symphony/f1/reply/#", None, None),
    ("symphony/f1/reply/+", None, None),
    ("#", None, None),
    ("$SYS/x", None, None),
    ("symphony/other/reply/alice", None, None),
    ("symphony/f1/reply/a/b", None, None),
    ("symphony/f1/reply/", None, None),
    ("symphony/f1/reply/a\x00b", None, None),
    ("symphony/f1/reply/a\u0085b", None, None),
    ("symphony/f1/reply/a\ufffeb", None, None),
    ("symphony/f1/router/r\U0010ffff/inbox", None, None),
    ("symphony/f1/reply/" + "x" * 10_000, None, None),
    ("symphony/f1/task/submit", None, None),
    ("symphony/f1/agent/n1-math/run", None, None),
    ("symphony/f1/router/r1", None, None),
    ("symphony/f1/router/a/b/inbox", None, None),
    ("symphony/f1/beacon/n1", None, None),
]


@pytest.mark.parametrize(("topic", "client", "router"), REPLY_TOPICS, ids=[t[:40] for t, _, _ in REPLY_TOPICS])
def test_only_topics_in_the_reply_namespaces_have_an_owner(topic: str, client: str | None, router: str | None) -> None:
    assert T.reply_owner(topic) == client
    assert T.router_reply_owner(topic) == router
