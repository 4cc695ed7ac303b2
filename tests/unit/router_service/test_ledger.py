"""The routers' task ledger (pure) and the router's handlers that use it (a recording client, no broker)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from support import deliver

from router.ledger import TaskLedger, answered_entry, claim_entry
from router.ownership import rendezvous_owner
from router.plumbing import LedgerEchoes
from router.routed_task import PendingRun, RoutedTask
from router.service import RouterConfig, RouterService
from shared.config import ConnectionSettings
from shared.messages import (
    AgentInfo,
    LedgerEntry,
    NodeBeacon,
    RouterPresence,
    RunRequest,
    RunResult,
    TaskAnswer,
    TaskEvent,
    TaskOptions,
    TaskRequest,
    TraceRequest,
    encode,
)

FABRIC = "unit"
P = f"symphony/{FABRIC}"
ALICE = f"{P}/reply/alice"


def answer(task_id: str = "t1", text: str = "42") -> TaskAnswer:
    return TaskAnswer(task_id=task_id, router_id="r2", answer=text)


# --- TaskLedger ---------------------------------------------------------------------------------------------


def test_an_answer_is_final_a_later_claim_does_not_replace_it() -> None:
    ledger = TaskLedger()
    ledger.apply(answered_entry(answer(), "alice", "r2", "i2", now=100.0), now=100.0)
    assert not ledger.apply(claim_entry("t1", "alice", "r1", "i1", now=101.0), now=101.0)
    entry = ledger.answered("t1")
    assert entry is not None and entry.answer is not None and entry.answer.answer == "42"


def test_a_claim_counts_only_while_its_router_instance_is_live() -> None:
    ledger = TaskLedger()
    ledger.apply(claim_entry("t1", "alice", "r2", "i2", now=1.0), now=1.0)
    assert ledger.claimed_elsewhere("t1", {"r1": "i1", "r2": "i2"}, "i1") is not None
    assert ledger.claimed_elsewhere("t1", {"r1": "i1"}, "i1") is None  # r2 died
    assert ledger.claimed_elsewhere("t1", {"r1": "i1", "r2": "i3"}, "i1") is None  # r2 came back: a new instance
    assert ledger.claimed_elsewhere("t1", {"r2": "i2"}, "i2") is None  # our own claim
    assert ledger.claimed_elsewhere("t-other", {"r2": "i2"}, "i1") is None


def test_entries_older_than_the_retention_window_are_forgotten() -> None:
    ledger = TaskLedger(retention_s=60.0)
    ledger.apply(answered_entry(answer("old"), "alice", "r2", "i2", now=0.0), now=0.0)
    ledger.apply(answered_entry(answer("new"), "alice", "r2", "i2", now=50.0), now=50.0)
    assert ledger.expire(now=70.0) == ["old"]
    assert ledger.answered("old") is None and ledger.answered("new") is not None
    assert not ledger.apply(answered_entry(answer("late"), "alice", "r2", "i2", now=0.0), now=70.0)


def test_the_ledger_keeps_at_most_max_entries() -> None:
    ledger = TaskLedger(max_entries=2)
    for index in range(3):
        ledger.apply(claim_entry(f"t{index}", "alice", "r1", "i1", now=1.0), now=1.0)
    assert len(ledger) == 2


@pytest.mark.parametrize("retention_s, max_entries", [(0.0, 10), (10.0, 0)])
def test_a_bad_ledger_setting_is_refused(retention_s: float, max_entries: int) -> None:
    with pytest.raises(ValueError, match="retention_s"):
        TaskLedger(retention_s, max_entries)


# --- the router's handlers ----------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.published: list[tuple[str, Any, bool]] = []
        self.connect_count = 1
        self.connected_since: float | None = 0.0  # connected long ago
        self.is_connected = True

    def publish(self, topic: str, message: Any, *, qos: int = 1, retain: bool = False) -> None:
        self.published.append((topic, message, retain))

    def on(self, prefix: str) -> list[Any]:
        return [message for topic, message, _ in self.published if topic.startswith(prefix)]


def router(router_id: str = "r1", **config: Any) -> tuple[RouterService, Recorder]:
    service = RouterService(RouterConfig(router_id=router_id, connection=ConnectionSettings(fabric=FABRIC), **config))
    recorder = Recorder()
    service.client = recorder  # type: ignore[assignment]
    service.roster.apply(service._presence("online"))  # the only live router: it owns every task
    service._joined = True
    return service, recorder


def submit(task_id: str = "t1") -> bytes:
    return encode(TaskRequest(task_id=task_id, query="q", reply_topic=ALICE))


def other_router_live(service: RouterService, router_id: str, instance_id: str) -> None:
    service.roster.apply(
        RouterPresence(router_id=router_id, instance_id=instance_id, epoch=1, status="online", sent_at=1.0)
    )


def ledger_message(service: RouterService, entry: LedgerEntry) -> None:
    deliver(service.subscriptions(), service.topics.ledger(entry.task_id), encode(entry))


def owned_by_r1(routers: list[str]) -> str:
    return next(t for t in (f"t{n}" for n in range(100)) if rendezvous_owner(t, routers) == "r1")


def test_an_answer_shared_by_another_router_is_replayed_without_a_new_run() -> None:
    service, recorder = router()
    ledger_message(service, answered_entry(answer(), "alice", "r2", "i2", now=time.time()))
    deliver(service.subscriptions(), f"{P}/task/submit", submit())
    [reply] = recorder.on(f"{P}/reply/")
    assert isinstance(reply, TaskAnswer) and reply.replayed and reply.answer == "42"
    assert service.running == {} and recorder.on(f"{P}/agent/") == []


def test_an_answer_is_shared_with_the_other_routers_retained() -> None:
    service, recorder = router()
    service._remember("alice", answer())
    [(topic, entry, retain)] = recorder.published
    assert topic == f"{P}/ledger/t1" and retain and isinstance(entry, LedgerEntry) and entry.status == "answered"


def test_a_task_another_live_router_runs_is_left_to_it() -> None:
    service, recorder = router()
    other_router_live(service, "r2", "i2")
    task_id = owned_by_r1(["r1", "r2"])
    ledger_message(service, claim_entry(task_id, "alice", "r2", "i2", now=time.time()))
    deliver(service.subscriptions(), f"{P}/task/submit", submit(task_id))
    assert service.running == {} and recorder.published == []


def test_a_claim_of_a_router_instance_that_died_is_void() -> None:
    async def scenario() -> None:
        service, recorder = router()
        other_router_live(service, "r2", "i-new")
        task_id = owned_by_r1(["r1", "r2"])
        ledger_message(service, claim_entry(task_id, "alice", "r2", "i-old", now=time.time()))
        deliver(service.subscriptions(), f"{P}/task/submit", submit(task_id))
        assert task_id in service.running
        [(topic, claim, retain)] = recorder.published[:1]
        assert topic == f"{P}/ledger/{task_id}" and retain and claim.status == "running" and claim.router_id == "r1"
        service.running[task_id].runner.cancel()  # type: ignore[union-attr]

    asyncio.run(scenario())


def routed(service: RouterService, task_id: str = "t1", runner: Any = None) -> RoutedTask:
    """A task of alice's that the router runs (full trace), as `_on_submit` records it."""
    request = TaskRequest(task_id=task_id, query="q", reply_topic=ALICE, options=TaskOptions(trace="full"))
    task = RoutedTask(request, "alice", service.topics.task_events("alice", task_id), runner)
    service.running[task_id] = task
    return task


def pending_run(service: RouterService, task_id: str = "t1", agent_id: str = "n1-math") -> RunRequest:
    request = RunRequest(
        dispatch_id=f"{task_id}.d1", task_id=task_id, agent_id=agent_id, subtask="q", reply_topic=service.reply_topic
    )
    task = service.running.get(task_id) or routed(service, task_id)
    task.runs[request.dispatch_id] = PendingRun(request, asyncio.get_running_loop().create_future())
    return request


def pending_result(service: RouterService, dispatch_id: str, task_id: str = "t1") -> asyncio.Future[RunResult]:
    return service.running[task_id].runs[dispatch_id].result


def test_a_resend_of_a_task_in_flight_is_acknowledged_without_sending_its_runs_again() -> None:
    async def scenario() -> None:
        service, recorder = router()
        routed(service, "t1", asyncio.ensure_future(asyncio.sleep(10)))
        pending_run(service)
        deliver(service.subscriptions(), f"{P}/task/submit", submit("t1"))
        assert recorder.on(f"{P}/agent/n1-math/run") == []  # one small message must not re-publish every run
        [event] = recorder.on(f"{P}/task/alice/t1/events")
        assert isinstance(event, TaskEvent) and event.event == "resent" and event.data == {"outstanding_runs": 1}
        service.running["t1"].runner.cancel()  # type: ignore[union-attr]

    asyncio.run(scenario())


def test_outstanding_runs_are_asked_again_after_a_reconnect_and_when_their_node_comes_back() -> None:
    async def scenario() -> None:
        service, recorder = router()
        run = pending_run(service)
        service._announce()  # the first connect: nothing to ask again
        assert recorder.on(f"{P}/agent/") == []
        recorder.connect_count = 2
        service._announce()
        assert recorder.on(f"{P}/agent/n1-math/run") == [run]
        beacon = NodeBeacon(
            node_id="n1",
            epoch=1,
            instance_id="x",
            status="online",
            agents=(AgentInfo(agent_id="n1-math", backend="echo", model="echo", max_in_flight=1),),
        )
        deliver(service.subscriptions(), service.topics.beacon("n1"), encode(beacon))
        assert recorder.on(f"{P}/agent/n1-math/run") == [run, run]

    asyncio.run(scenario())


def test_a_node_back_as_a_new_process_fails_its_outstanding_runs_at_once() -> None:
    async def scenario() -> None:
        service, recorder = router()
        info = AgentInfo(agent_id="n1-math", backend="echo", model="echo", max_in_flight=1)
        for epoch in (1, 2):
            beacon = NodeBeacon(node_id="n1", epoch=epoch, instance_id=f"x{epoch}", status="online", agents=(info,))
            if epoch == 2:
                run = pending_run(service)
            deliver(service.subscriptions(), service.topics.beacon("n1"), encode(beacon))
        future = pending_result(service, run.dispatch_id)
        assert future.done() and future.result().error == "backend_error"  # redispatched by the pipeline
        assert recorder.on(f"{P}/agent/") == []

    asyncio.run(scenario())


def node_with_a_pending_run(service: RouterService) -> tuple[NodeBeacon, RunRequest]:
    """Node n1 (one agent) announced online, and a run of ours outstanding on its agent."""
    info = AgentInfo(agent_id="n1-math", backend="echo", model="echo", max_in_flight=1)
    online = NodeBeacon(node_id="n1", epoch=1, instance_id="x", status="online", agents=(info,))
    deliver(service.subscriptions(), service.topics.beacon("n1"), encode(online))
    return online, pending_run(service)


def will_of(online: NodeBeacon) -> NodeBeacon:
    """The node's Will: the same beacon, offline, sent later."""
    return online.model_copy(update={"status": "offline", "sent_at": online.sent_at + 1})


@pytest.mark.parametrize("just_reconnected", [False, True])
def test_an_offline_will_read_right_after_our_reconnect_gives_the_node_longer_to_come_back(
    just_reconnected: bool,
) -> None:
    async def scenario() -> None:
        service, recorder = router(offline_grace_s=0.05, agent_wait_s=0.5)
        online, run = node_with_a_pending_run(service)
        recorder.connected_since = time.monotonic()  # connected just now: the first time, or again
        if just_reconnected:  # the broker restarted: we are back first and read the node's retained Will
            recorder.connect_count = 2
        deliver(service.subscriptions(), service.topics.beacon("n1"), encode(will_of(online)))
        await asyncio.sleep(0.2)  # past offline_grace_s, within agent_wait_s
        future = pending_result(service, run.dispatch_id)
        assert future.done() is not just_reconnected
        if just_reconnected:  # the node re-announces: its run is asked again (same dispatch id), not failed
            back = online.model_copy(update={"sent_at": online.sent_at + 2})
            deliver(service.subscriptions(), service.topics.beacon("n1"), encode(back))
            assert recorder.on(f"{P}/agent/n1-math/run") == [run] and not future.done()

    asyncio.run(scenario())


def test_an_offline_will_sent_as_the_broker_stops_fails_nothing_until_the_nodes_could_come_back() -> None:
    """A stopping broker may publish every Will and go: the grace ends while we are cut off, then we reconnect."""

    async def scenario() -> None:
        service, recorder = router(offline_grace_s=0.05, agent_wait_s=0.3)
        online, run = node_with_a_pending_run(service)
        deliver(
            service.subscriptions(), service.topics.beacon("n1"), encode(will_of(online))
        )  # the Will, then the broker goes
        recorder.is_connected = False
        await asyncio.sleep(0.2)  # the grace is over while we are cut off
        future = pending_result(service, run.dispatch_id)
        assert not future.done()
        recorder.is_connected, recorder.connect_count, recorder.connected_since = True, 2, time.monotonic()
        await asyncio.sleep(0.1)  # back, but the node has not had agent_wait_s to re-announce
        assert not future.done()
        await asyncio.sleep(0.4)  # it had, and did not: its run fails
        assert future.done() and future.result().error_message == "node n1 went offline"

    asyncio.run(scenario())


def test_the_grace_of_a_stopped_process_does_not_fail_the_runs_of_the_process_that_replaced_it() -> None:
    """A node stops (its offline beacon), starts again as a new process and takes a new run within the grace:
    the old process's grace ends and the new process's run goes on (CI: a site's own agent was dropped)."""

    async def scenario() -> None:
        service, _recorder = router(offline_grace_s=0.05)
        online, _ = node_with_a_pending_run(service)
        service.running.clear()
        deliver(service.subscriptions(), service.topics.beacon("n1"), encode(will_of(online)))
        restarted = online.model_copy(update={"epoch": 2, "instance_id": "y", "sent_at": online.sent_at + 2})
        deliver(service.subscriptions(), service.topics.beacon("n1"), encode(restarted))
        run = pending_run(service)  # placed on the new process
        await asyncio.sleep(0.2)  # past the old process's grace
        assert not pending_result(service, run.dispatch_id).done()

    asyncio.run(scenario())


def test_a_run_is_not_timed_out_while_the_router_is_cut_off_from_the_broker() -> None:
    async def scenario() -> None:
        service, recorder = router()
        routed(service)
        request = RunRequest(dispatch_id="t1.d1", task_id="t1", agent_id="n1-math", subtask="q", reply_topic=ALICE)
        running = asyncio.ensure_future(service.run(request, timeout_s=0.05))
        await asyncio.sleep(0)
        recorder.is_connected = False  # the broker went away: the agent cannot answer, nor we hear it
        await asyncio.sleep(0.2)
        assert not running.done()
        future = pending_result(service, "t1.d1")
        recorder.is_connected, recorder.connected_since = True, time.monotonic()  # back; the run is asked again
        future.set_result(RunResult(dispatch_id="t1.d1", task_id="t1", agent_id="n1-math", node_id="n1", text="42"))
        assert (await running).text == "42"
        timed_out = await service.run(request.model_copy(update={"dispatch_id": "t1.d2"}), timeout_s=0.05)
        assert timed_out.error == "timeout"  # connected all along: the run's own timeout

    asyncio.run(scenario())


def test_a_task_answered_meanwhile_by_another_router_gets_that_answer_not_a_second_one() -> None:
    async def scenario() -> None:
        service, recorder = router(agent_wait_s=0.2)  # no agent: our own run of the task ends in no_agents
        deliver(service.subscriptions(), f"{P}/task/submit", submit("t1"))
        ledger_message(service, answered_entry(answer("t1", "theirs"), "alice", "r2", "i2", now=time.time()))
        await asyncio.gather(*(task.runner for task in service.running.values() if task.runner))
        [reply] = recorder.on(f"{P}/reply/")
        assert isinstance(reply, TaskAnswer) and reply.answer == "theirs" and reply.replayed
        assert [entry.status for entry in recorder.on(f"{P}/ledger/")] == ["running"]  # theirs stays the answer

    asyncio.run(scenario())


def test_a_long_task_keeps_its_claim_and_expired_entries_are_cleared() -> None:
    async def scenario() -> None:
        service, recorder = router()
        retention = service.ledger.retention_s
        service.ledger.apply(claim_entry("long", "alice", "r1", service.instance_id, now=1000.0), now=1000.0)
        service.ledger.apply(answered_entry(answer("old"), "alice", "r2", "i2", now=1000.0), now=1000.0)
        long = routed(service, "long", asyncio.ensure_future(asyncio.sleep(10)))
        service.keep_ledger(now=1000.0 + retention * 0.75)
        renewed = service.ledger.get("long")
        assert renewed is not None and renewed.at == 1000.0 + retention * 0.75
        service.keep_ledger(now=1000.0 + retention + 1)
        assert service.ledger.get("long") is not None and service.ledger.get("old") is None
        assert (f"{P}/ledger/old", b"", True) in recorder.published
        long.runner.cancel()  # type: ignore[union-attr]

    asyncio.run(scenario())


def presence_message(service: RouterService, presence: RouterPresence) -> None:
    deliver(service.subscriptions(), service.topics.router_presence(presence.router_id), encode(presence))


def test_a_router_that_hears_its_own_will_while_it_lives_announces_itself_again() -> None:
    service, recorder = router()
    presence_message(service, service._presence("offline"))  # published late by the broker, e.g. a NATS cluster
    [online] = recorder.on(f"{P}/router/r1")
    assert isinstance(online, RouterPresence) and online.status == "online" and recorder.published[0][2]
    older = service._presence("offline").model_copy(update={"instance_id": "an-older-instance"})
    presence_message(service, older)  # the Will of a previous process of ours: nothing to deny
    assert len(recorder.on(f"{P}/router/r1")) == 1


def test_the_answers_a_router_owns_are_shared_again_when_it_joins_or_comes_back() -> None:
    service, recorder = router()
    now = time.time()
    for n in range(20):
        ledger_message(service, answered_entry(answer(f"t{n}"), "alice", "r1", service.instance_id, now=now))
    service.ledger.apply(claim_entry("t-running", "alice", "r1", service.instance_id, now=now), now)
    r2 = RouterPresence(router_id="r2", instance_id="i2", epoch=1, status="online", sent_at=now)
    presence_message(service, r2)
    owned = {f"t{n}" for n in range(20) if rendezvous_owner(f"t{n}", ["r1", "r2"]) == "r2"}
    shared = recorder.on(f"{P}/ledger/")
    assert owned and {entry.task_id for entry in shared} == owned
    assert all(entry.status == "answered" for entry in shared) and all(retain for *_, retain in recorder.published)
    presence_message(service, r2)  # the same instance again (a reconnect): nothing more
    presence_message(service, r2.model_copy(update={"status": "offline"}))
    assert len(recorder.on(f"{P}/ledger/")) == len(owned)
    presence_message(service, r2.model_copy(update={"instance_id": "i3", "epoch": 2}))  # back as a new process
    assert len(recorder.on(f"{P}/ledger/")) == 2 * len(owned)


def test_the_echo_of_our_own_entry_is_recognised_once_and_the_memory_is_bounded() -> None:
    echoes = LedgerEchoes()
    claim = encode(claim_entry("t1", "alice", "r1", "i1", now=1.0))
    echoes.sent(claim)
    assert echoes.is_echo(claim) and not echoes.is_echo(claim)  # a second copy is someone's replay: decoded
    for n in range(LedgerEchoes.MAX_ECHOES + 1):
        echoes.sent(encode(claim_entry(f"t{n}", "alice", "r1", "i1", now=1.0)))
    assert not echoes.is_echo(encode(claim_entry("t0", "alice", "r1", "i1", now=1.0)))  # the oldest forgotten


def test_a_submitted_task_claims_it_and_the_claims_echo_counts_for_the_join_but_changes_nothing() -> None:
    async def scenario() -> None:
        service, recorder = router()
        deliver(service.subscriptions(), f"{P}/task/submit", submit("t1"))
        [(_, claim, _)] = recorder.published
        heard = service._ledger_heard
        service.ledger.forget("t1")  # were the echo applied, the claim would be back
        ledger_message(service, claim)
        assert service._ledger_heard == heard + 1 and service.ledger.get("t1") is None
        service.running["t1"].runner.cancel()  # type: ignore[union-attr]

    asyncio.run(scenario())


def test_a_dashboards_trace_request_makes_the_tasks_that_start_meanwhile_trace_in_full() -> None:
    async def scenario() -> None:
        service, _ = router()
        deliver(service.subscriptions(), f"{P}/task/submit", submit("before"))
        watching = TraceRequest(observer_id="observer-1", duration_s=30.0)
        deliver(service.subscriptions(), service.topics.trace_requests(), encode(watching))
        too_long = b'{"kind": "trace_request", "observer_id": "o", "duration_s": 1e9}'
        deliver(service.subscriptions(), service.topics.trace_requests(), too_long)  # refused: 300 s at most
        assert service.full_traces_until <= time.monotonic() + 30.0
        deliver(service.subscriptions(), f"{P}/task/submit", submit("during"))
        service.full_traces_until = time.monotonic() - 1  # the request lapsed: nobody asked again
        deliver(service.subscriptions(), f"{P}/task/submit", submit("after"))
        traces = {task_id: task.request.options.trace for task_id, task in service.running.items()}
        assert traces == {"before": "summary", "during": "full", "after": "summary"}
        for task in service.running.values():
            task.runner.cancel()  # type: ignore[union-attr]

    asyncio.run(scenario())
