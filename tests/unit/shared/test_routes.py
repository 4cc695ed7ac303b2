"""The routing table (`shared.topics` routes) and what a typed subscription does before its handler runs
(`shared.delivery`): one decode, the kind checked against the route, bad input logged once and dropped."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from shared import topics as routes
from shared.delivery import RawHandler, subscription
from shared.errors import MessageError
from shared.messages import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    MAX_NESTING_DEPTH,
    MESSAGE_TYPES,
    NodeBeacon,
    RunCancel,
    RunRequest,
    TaskEvent,
    WireModel,
    encode,
)
from shared.topics import Route, TopicRoute, Topics

T = Topics("f1")
BEACON = NodeBeacon(node_id="n1", epoch=1, instance_id="i1", status="online")
RUN = RunRequest(dispatch_id="d1", task_id="t1", agent_id="a1", subtask="2+2", reply_topic=T.router_inbox("r1"))
CANCEL = RunCancel(dispatch_id="d1", task_id="t1", agent_id="a1")
TABLE = {name: value for name, value in vars(routes).items() if isinstance(value, Route)}


class Heard:
    """A typed handler that records what it was given, and the refusals and clears beside it."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, WireModel]] = []
        self.cleared: list[str] = []
        self.refused: list[tuple[str, bytes, str]] = []

    def message(self, topic: str, message: Any) -> None:
        self.messages.append((topic, message))

    def clear(self, topic: str) -> None:
        self.cleared.append(topic)

    def refuse(self, topic: str, payload: bytes, error: MessageError) -> None:
        self.refused.append((topic, payload, str(error)))


def deliver_on(route: TopicRoute[Any], handler: Any, **options: Any) -> RawHandler:
    """The raw handler `FabricClient.route` subscribes for `route` (its filter checked on the way)."""
    topic_filter, deliver = subscription(route, handler, **options)
    assert topic_filter == route.topic_filter
    return deliver


def malformed_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "shared.delivery"]


# --- the table ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TABLE))
def test_every_route_builds_its_topic_with_topics_and_carries_known_kinds(name: str) -> None:
    route = TABLE[name]
    assert getattr(Topics, route.name) is route.build  # the topic string comes from the one builder
    assert route.kinds and all(MESSAGE_TYPES[kind.model_fields["kind"].default] is kind for kind in route.kinds)


def test_a_route_is_built_for_one_fabric_and_may_be_shared_by_a_group() -> None:
    run = routes.AGENT_RUN.on(T, "a1")
    assert run == TopicRoute("symphony/f1/agent/a1/run", (RunRequest, RunCancel), False, "agent_run")
    submissions = routes.TASK_SUBMISSIONS.on(T)
    assert submissions.shared_by(T, None) is submissions
    assert submissions.shared_by(T, "g1").topic_filter == "$share/g1/symphony/f1/task/submit/+"


# --- a typed subscription -------------------------------------------------------------------------------------


def test_a_message_of_the_routes_kinds_reaches_the_handler_decoded() -> None:
    heard = Heard()
    deliver = deliver_on(routes.AGENT_RUN.on(T, "a1"), heard.message)
    deliver(T.agent_run("a1"), encode(RUN))
    deliver(T.agent_run("a1"), encode(CANCEL))
    assert heard.messages == [(T.agent_run("a1"), RUN), (T.agent_run("a1"), CANCEL)]


def test_a_message_of_another_kind_is_dropped_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    heard = Heard()
    deliver = deliver_on(routes.BEACONS.on(T), heard.message)
    with caplog.at_level(logging.INFO):
        deliver(T.beacon("n1"), encode(RUN))
    assert heard.messages == []
    assert malformed_logs(caplog) == [
        f"ignoring a malformed message on {T.beacon('n1')!r} (beacons): expected a NodeBeacon, got kind 'run_request'"
    ]


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def too_deep() -> bytes:
    event = encode(TaskEvent(task_id="t1", router_id="r1", event="planned", at=0.0))
    return json.dumps(dict(json.loads(event), data={"x": _nested(MAX_NESTING_DEPTH + 5)})).encode()


BAD_INPUT = {
    "not json": b"not json",
    "not an object": b"[1, 2]",
    "unknown kind": b'{"kind": "nonsense", "v": 1}',
    "invalid fields": b'{"kind": "task_event", "v": 1, "task_id": "t/1"}',
    "too deep": too_deep(),
    "too large": b'{"kind": "task_event", "pad": "' + b"x" * DEFAULT_MAX_PAYLOAD_BYTES + b'"}',
    "empty on a route that is not retained": b"",
}


@pytest.mark.parametrize("payload", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_is_logged_once_and_never_reaches_the_handler(
    payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    heard = Heard()
    deliver = deliver_on(routes.ALL_TASK_EVENTS.on(T), heard.message)
    with caplog.at_level(logging.INFO):
        assert deliver(T.task_events("c1", "t1"), payload) is None
    assert heard.messages == []
    assert len(malformed_logs(caplog)) == 1


@pytest.mark.parametrize("payload", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_goes_to_the_subscribers_refusal_when_it_has_one(
    payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    heard = Heard()
    deliver = deliver_on(routes.ALL_TASK_EVENTS.on(T), heard.message, on_invalid=heard.refuse)
    with caplog.at_level(logging.INFO):
        deliver(T.task_events("c1", "t1"), payload)
    assert heard.messages == [] and malformed_logs(caplog) == []  # the refusal logs (and answers) it
    assert [(topic, sent) for topic, sent, _ in heard.refused] == [(T.task_events("c1", "t1"), payload)]


def test_an_empty_payload_on_a_retained_route_is_a_cleared_topic(caplog: pytest.LogCaptureFixture) -> None:
    heard = Heard()
    with caplog.at_level(logging.INFO):
        deliver_on(routes.BEACONS.on(T), heard.message, on_clear=heard.clear)(T.beacon("n1"), b"")
        deliver_on(routes.BEACONS.on(T), heard.message)(T.beacon("n2"), b"")  # nobody asked: dropped quietly
    assert heard.cleared == [T.beacon("n1")] and heard.messages == [] and malformed_logs(caplog) == []


def test_a_coroutine_handler_is_returned_for_the_client_to_run() -> None:
    heard: list[NodeBeacon] = []

    async def on_beacon(topic: str, beacon: NodeBeacon) -> None:
        heard.append(beacon)

    async def deliver() -> None:
        pending = deliver_on(routes.BEACONS.on(T), on_beacon)(T.beacon("n1"), encode(BEACON))
        assert pending is not None
        await pending

    asyncio.run(deliver())
    assert heard == [BEACON]


def test_a_decoder_of_the_routes_kind_replaces_decode_and_its_refusals_are_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    heard = Heard()

    def strict(payload: bytes) -> NodeBeacon:
        if b"draining" in payload:
            raise MessageError("no draining beacons here")
        return NodeBeacon.model_validate_json(payload)

    deliver = deliver_on(routes.BEACONS.on(T), heard.message, decoder=strict)
    with caplog.at_level(logging.INFO):
        deliver(T.beacon("n1"), encode(BEACON))
        deliver(T.beacon("n1"), encode(BEACON.model_copy(update={"status": "draining"})))
    assert heard.messages == [(T.beacon("n1"), BEACON)]
    assert [line.rsplit(": ", 1)[-1] for line in malformed_logs(caplog)] == ["no draining beacons here"]
