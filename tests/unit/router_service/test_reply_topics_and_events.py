"""The router's handlers with hostile reply topics, answer replays and trace events (no broker: a recording client)."""

from __future__ import annotations

from typing import Any

import pytest
from support import deliver

from router.routed_task import RoutedTask
from router.service import RouterConfig, RouterService, without_gold
from shared.config import ConnectionSettings
from shared.messages import ErrorReply, TaskAnswer, TaskEvent, TaskOptions, TaskRequest, encode

FABRIC = "unit"
P = f"symphony/{FABRIC}"


class Recorder:
    def __init__(self) -> None:
        self.published: list[tuple[str, Any]] = []

    def publish(self, topic: str, message: Any, *, qos: int = 1, retain: bool = False) -> None:
        self.published.append((topic, message))


def router() -> tuple[RouterService, Recorder]:
    service = RouterService(RouterConfig(router_id="r1", connection=ConnectionSettings(fabric=FABRIC)))
    recorder = Recorder()
    service.client = recorder  # type: ignore[assignment]
    service.roster.apply(service._presence("online"))  # the only live router: it owns every task
    return service, recorder


def request(reply_topic: str, task_id: str = "t1", **options: Any) -> bytes:
    task = TaskRequest(task_id=task_id, query="q", reply_topic=f"{P}/reply/x", options=TaskOptions(**options))
    return encode(task).replace(f'"{P}/reply/x"'.encode(), f'"{reply_topic}"'.encode())


HOSTILE = [
    "$SYS/x",
    "symphony/other/reply/alice",
    f"{P}/task/submit",
    f"{P}/beacon/n1",
    f"{P}/agent/n1-math/run",
    f"{P}/router/r1/inbox",
    f"{P}/reply/a/b",
]


@pytest.mark.parametrize("reply_topic", HOSTILE)
def test_a_task_with_a_reply_topic_outside_the_reply_namespace_is_dropped(reply_topic: str) -> None:
    service, recorder = router()
    deliver(service.subscriptions(), f"{P}/task/submit", request(reply_topic))
    assert recorder.published == [] and service.running == {}


@pytest.mark.parametrize("reply_topic", ["#", "a/+", "x\\u0000y", "y" * 2000])
def test_an_undecodable_reply_topic_gets_no_answer(reply_topic: str) -> None:
    service, recorder = router()
    deliver(service.subscriptions(), f"{P}/task/submit", request(reply_topic))
    assert recorder.published == []


def test_a_malformed_task_with_a_valid_reply_topic_gets_an_error_reply() -> None:
    service, recorder = router()
    deliver(
        service.subscriptions(),
        f"{P}/task/submit",
        b'{"kind": "task_request", "task_id": "t9", "reply_topic": "%s/reply/alice"' % P.encode(),
    )
    [(topic, reply)] = recorder.published
    assert topic == f"{P}/reply/alice" and isinstance(reply, ErrorReply) and reply.code == "bad_request"


def test_an_answer_is_replayed_only_to_the_client_that_asked() -> None:
    service, recorder = router()
    service._remember("alice", TaskAnswer(task_id="t1", router_id="r1", answer="secret"))
    deliver(service.subscriptions(), f"{P}/task/submit", request(f"{P}/reply/bob"))
    deliver(service.subscriptions(), f"{P}/task/submit", request(f"{P}/reply/alice"))
    (bob_topic, to_bob), (alice_topic, to_alice) = [(t, m) for t, m in recorder.published if "/reply/" in t]
    assert bob_topic == f"{P}/reply/bob" and isinstance(to_bob, ErrorReply) and "secret" not in to_bob.model_dump_json()
    assert alice_topic == f"{P}/reply/alice" and isinstance(to_alice, TaskAnswer) and to_alice.replayed


def test_events_go_to_the_submitting_clients_namespace_without_the_gold_answer() -> None:
    service, recorder = router()
    task = TaskRequest(task_id="t1", query="q", reply_topic=f"{P}/reply/alice", options=TaskOptions(trace="full"))
    service.running["t1"] = RoutedTask(task, "alice", service.topics.task_events("alice", "t1"))
    options = TaskOptions(gold_answer="GOLD-ANSWER-7").model_dump()
    service.emit("t1", "received", {"query": "q", "options": options})
    service.emit("t-unknown", "received", {"query": "someone else's"})
    [(topic, event)] = recorder.published
    assert topic == f"{P}/task/alice/t1/events" and isinstance(event, TaskEvent)
    assert "gold_answer" not in event.data["options"] and "GOLD-ANSWER-7" not in event.model_dump_json()


def test_without_gold_removes_it_at_any_depth() -> None:
    data = {"gold_answer": "x", "options": {"gold_answer": "x", "top_l": 3}, "list": [{"gold_answer": "x"}]}
    assert without_gold(data) == {"options": {"top_l": 3}, "list": [{}]}
