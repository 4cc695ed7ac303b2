"""Tenancy in the router (router.tenancy, docs/tenancy.md): the submit topic names the account; replies, events,
resends, caps and teaching follow from it. The router runs on a recording client; no broker."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
from support import deliver

from router.brain import RoutingBrain
from router.pipeline import TaskPipeline
from router.planning import MAX_STEPS
from router.priors import PriorTable
from router.registry import AgentRegistry
from router.routed_task import PendingRun
from router.screening import AgentView
from router.service import RouterConfig, RouterService
from router.tenancy import AccountTasks, Tenancy, bind, submitter
from shared.config import AccountLimits, ConnectionSettings, RouterSettings
from shared.messages import (
    AgentInfo,
    AgentState,
    ErrorReply,
    NodeBeacon,
    NodeState,
    RouterPresence,
    RunRequest,
    TaskCancel,
    TaskEvent,
    TaskOptions,
    TaskRequest,
    encode,
)
from shared.topics import Topics

FABRIC = "unit"
P = f"symphony/{FABRIC}"
TOPICS = Topics(FABRIC)


class Recorder:
    """The router's MQTT client, recording what it publishes."""

    is_connected = True
    connected_since = 0.0
    connect_count = 1

    def __init__(self) -> None:
        self.published: list[tuple[str, Any]] = []

    def publish(self, topic: str, message: Any, *, qos: int = 1, retain: bool = False) -> None:
        self.published.append((topic, message))

    def on(self, prefix: str) -> list[Any]:
        return [message for topic, message in self.published if topic.startswith(prefix)]


def router(username: str | None = "hub", **settings: Any) -> tuple[RouterService, Recorder]:
    connection = ConnectionSettings(fabric=FABRIC, username=username)
    service = RouterService(RouterConfig(router_id="r1", connection=connection, **settings))
    recorder = Recorder()
    service.client = recorder  # type: ignore[assignment]
    service.roster.apply(service._presence("online"))  # the only live router: it owns every task
    service._joined = True
    return service, recorder


def task(task_id: str = "t1", **fields: Any) -> TaskRequest:
    options = fields.pop("options", {})
    return TaskRequest(task_id=task_id, query="What is 6 * 7?", options=TaskOptions(**options), **fields)


def submit(service: RouterService, account: str, request: TaskRequest | TaskCancel) -> None:
    deliver(service.subscriptions(), TOPICS.client_task_submit(account), encode(request))


# --- the pure rules ---------------------------------------------------------------------------------------


def test_the_account_comes_from_the_submit_topic_and_the_legacy_topic_only_on_an_anonymous_fabric() -> None:
    request = task(reply_topic=TOPICS.reply("alice"))
    assert submitter(TOPICS, TOPICS.client_task_submit("bob"), request, legacy=False) == "bob"
    assert submitter(TOPICS, TOPICS.task_submit(), request, legacy=True) == "alice"
    assert submitter(TOPICS, TOPICS.task_submit(), request, legacy=False) is None
    assert submitter(TOPICS, f"{P}/task/submit/", request, legacy=True) is None  # no account, not the legacy topic


@pytest.mark.parametrize(
    ("fields", "bound"),
    [
        ({}, True),
        ({"reply_topic": f"{P}/reply/alice", "client_id": "alice"}, True),
        ({"reply_topic": f"{P}/reply/bob"}, False),  # answers to another client: refused
        ({"client_id": "bob"}, False),
        ({"reply_topic": "symphony/other/reply/alice"}, False),
    ],
)
def test_a_task_is_bound_to_its_account_and_refused_when_it_names_another(fields: dict[str, str], bound: bool) -> None:
    result = bind(TOPICS, task(**fields), "alice")
    if bound:
        assert isinstance(result, TaskRequest)
        assert (result.reply_topic, result.client_id) == (f"{P}/reply/alice", "alice")
    else:
        assert isinstance(result, ErrorReply) and result.code == "forbidden" and result.task_id == "t1"


def test_caps_refuse_what_is_too_large_or_too_many_and_cap_the_deadline() -> None:
    tenancy = Tenancy(
        max_deadline_s=60.0,
        limits=AccountLimits(tasks=2, cot_count=3, plan_k=2, steps=4),
        account_limits={"bench": AccountLimits(tasks=100)},
    )
    big = task(options={"cot_count": 9})
    assert (refused := tenancy.refusal(big, "alice", 0)) is not None and refused.code == "too_large"
    assert (refused := tenancy.refusal(task(options={"plan_k": 8}), "alice", 0)) and refused.code == "too_large"
    assert (refused := tenancy.refusal(task(), "alice", 2)) is not None and refused.code == "rate_limited"
    assert tenancy.refusal(task(), "alice", 1) is None
    assert tenancy.refusal(big, "bench", 50) is None  # an account's own caps replace the default ones
    capped = tenancy.capped(task(options={"deadline_s": 3600.0, "run_timeout_s": 3000.0}))
    assert (capped.options.deadline_s, capped.options.run_timeout_s) == (60.0, 60.0)
    assert tenancy.capped(task(options={"deadline_s": 5.0})).options.deadline_s == 5.0  # never raised
    assert (tenancy.max_steps("alice"), tenancy.max_steps("bench")) == (4, MAX_STEPS)


def test_router_settings_carry_the_tenancy() -> None:
    settings = RouterSettings(teachers=("bench",), max_deadline_s=30, limits={"tasks": 4}, account_limits={"x": {}})
    tenancy = Tenancy.from_settings(settings)
    assert tenancy.teaches("bench") and not tenancy.teaches("alice")
    assert (
        tenancy.max_deadline_s == 30 and tenancy.limits_of("alice").tasks == 4 and tenancy.limits_of("x").tasks is None
    )


def test_account_tasks_count_up_and_down() -> None:
    tasks = AccountTasks()
    tasks.started("a")
    tasks.started("a")
    tasks.finished("a")
    assert tasks.running("a") == 1 and tasks.running("b") == 0
    tasks.finished("a")
    assert list(tasks.accounts()) == []


# --- the router service -----------------------------------------------------------------------------------


def test_a_task_naming_another_clients_reply_topic_is_refused_on_its_own() -> None:
    service, recorder = router()
    submit(service, "bob", task(reply_topic=TOPICS.reply("alice"), client_id="alice"))
    assert recorder.on(f"{P}/reply/alice") == [] and recorder.on(f"{P}/task/alice/") == []
    [refusal] = recorder.on(f"{P}/reply/bob")
    assert isinstance(refusal, ErrorReply) and refusal.code == "forbidden"
    assert service.running == {}


def test_replies_and_events_go_to_the_account_of_the_submit_topic() -> None:
    async def scenario() -> None:
        service, _recorder = router()
        submit(service, "alice", task())  # no reply_topic: the account says where
        assert service.running["t1"].request.reply_topic == TOPICS.reply("alice")
        assert service.running["t1"].events_topic == TOPICS.task_events("alice", "t1")
        deliver(service.subscriptions(), TOPICS.task_submit(), encode(task("t2", reply_topic=TOPICS.reply("alice"))))
        assert "t2" not in service.running  # an account-less topic is not read with credentials
        service.running["t1"].runner.cancel()

    asyncio.run(scenario())


def test_a_resend_re_publishes_no_run_and_another_account_gets_nothing_of_the_task() -> None:
    async def scenario() -> None:
        service, recorder = router()
        submit(service, "alice", task(options={"cot_count": 9, "trace": "full"}))
        run = RunRequest(dispatch_id="t1.d1", task_id="t1", agent_id="a1", subtask="q", reply_topic=service.reply_topic)
        service.running["t1"].runs[run.dispatch_id] = PendingRun(run, asyncio.get_running_loop().create_future())
        before = len(recorder.published)
        for _ in range(5):
            submit(service, "alice", task(options={"cot_count": 9, "trace": "full"}))
        submit(service, "bob", task())
        submit(service, "bob", TaskCancel(task_id="t1", client_id="alice"))
        after = recorder.published[before:]
        assert [topic for topic, _ in after if "/agent/" in topic] == []
        resent = [m for t, m in after if t == TOPICS.task_events("alice", "t1")]
        assert [event.event for event in resent] == ["resent"] * 5 and isinstance(resent[0], TaskEvent)
        assert resent[0].data == {"outstanding_runs": 1}
        [refusal] = [m for t, m in after if t == TOPICS.reply("bob")]
        assert isinstance(refusal, ErrorReply) and refusal.code == "bad_request"
        assert not service.running["t1"].runner.cancelled()  # bob cannot cancel alice's task
        submit(service, "alice", TaskCancel(task_id="t1"))
        await asyncio.sleep(0)
        assert service.running.get("t1") is None or service.running["t1"].runner.cancelled()

    asyncio.run(scenario())


def test_an_accounts_tasks_in_flight_are_capped_and_freed_when_done() -> None:
    async def scenario() -> None:
        service, recorder = router(limits=AccountLimits(tasks=2))
        for number in range(3):
            submit(service, "alice", task(f"a{number}"))
        submit(service, "bob", task("b0"))  # another account has its own allowance
        assert set(service.running) == {"a0", "a1", "b0"}
        [refusal] = recorder.on(f"{P}/reply/alice")
        assert isinstance(refusal, ErrorReply) and refusal.code == "rate_limited" and refusal.task_id == "a2"
        service.running["a0"].runner.cancel()
        await asyncio.sleep(0.01)
        submit(service, "alice", task("a3"))
        assert "a3" in service.running
        for running in service.running.values():
            running.runner.cancel()

    asyncio.run(scenario())


def test_too_large_tasks_are_refused_and_deadlines_capped() -> None:
    async def scenario() -> None:
        service, recorder = router(max_deadline_s=30.0, limits=AccountLimits(cot_count=3))
        submit(service, "alice", task("big", options={"cot_count": 9}))
        submit(service, "alice", task("long", options={"deadline_s": 3600.0}))
        [refusal] = recorder.on(f"{P}/reply/alice")
        assert isinstance(refusal, ErrorReply) and (refusal.code, refusal.task_id) == ("too_large", "big")
        assert service.running["long"].request.options.deadline_s == 30.0
        service.running["long"].runner.cancel()

    asyncio.run(scenario())


def test_the_legacy_submit_topic_still_works_on_an_anonymous_fabric() -> None:
    async def scenario() -> None:
        service, _recorder = router(username=None)
        deliver(service.subscriptions(), TOPICS.task_submit(), encode(task(reply_topic=TOPICS.reply("me"))))
        assert service.running["t1"].request.client_id == "me"
        service.running["t1"].runner.cancel()

    asyncio.run(scenario())


def test_a_state_or_presence_naming_another_id_than_its_topic_is_ignored() -> None:
    service, _ = router()
    info = AgentInfo(agent_id="b-writer", backend="echo", model="echo", max_in_flight=1)
    beacon = NodeBeacon(node_id="node-b", epoch=5, instance_id="i", status="online", agents=(info,))
    service.registry.apply_beacon(beacon, time.monotonic())
    busy = AgentState(agent_id="b-writer", load=1.0, in_flight=1, queue_length=9, available=False)
    forged = NodeState(node_id="node-b", epoch=5, agents=(busy,))
    deliver(service.subscriptions(), TOPICS.state("node-a"), encode(forged))  # node-a may write only state/node-a
    (view,) = service.live_agents()
    assert view.available and view.load == 0.0
    presence = RouterPresence(router_id="r9", instance_id="x", epoch=1, status="online")
    deliver(service.subscriptions(), TOPICS.router_presence("hub"), encode(presence))
    assert "r9" not in service.roster.presences


def test_a_beacon_cannot_take_an_agent_id_another_live_node_holds() -> None:
    registry = AgentRegistry(stale_after_s=30.0)
    mine = AgentInfo(agent_id="a-writer", backend="echo", model="echo", max_in_flight=1, capabilities=("writing",))
    claim = mine.model_copy(update={"capabilities": ("math",), "cost_per_1k_tokens": 0.0})
    registry.apply_beacon(NodeBeacon(node_id="node-a", epoch=1, instance_id="i", status="online", agents=(mine,)), 0.0)
    thief = NodeBeacon(node_id="node-b", epoch=1, instance_id="j", status="online", agents=(claim,))
    registry.apply_beacon(thief, 1.0)
    (view,) = registry.live_agents(2.0)
    assert (view.node_id, view.capabilities) == ("node-a", ("writing",))
    assert registry.agent_ids_of("node-b") == set()  # its Will cannot fail node-a's runs either
    registry.apply_beacon(NodeBeacon(node_id="node-a", epoch=1, instance_id="i", status="offline"), 3.0)
    registry.apply_beacon(thief.model_copy(update={"epoch": 2}), 4.0)  # once node-a is gone the agent may move
    (view,) = registry.live_agents(5.0)
    assert view.node_id == "node-b"


# --- learning -------------------------------------------------------------------------------------------


def test_the_priors_table_evicts_the_least_recently_updated_keys() -> None:
    table = PriorTable(max_keys=8)
    table.observe("good", "gsm8k", "hard", "math", True)  # 4 keys (one per level)
    for number in range(50):
        table.observe("good", "gsm8k", "hard", "math", True)  # still in use
        table.observe("junk", f"label-{number}", None, None, True)
    assert len(table) <= 8
    assert table.estimate("good", "gsm8k", "hard", "math") > 0.9  # the live key survived the junk
    keys = {tuple(row[:4]) for row in table.to_dict()["counts"]}
    assert ("junk", "label-0", "*", "*") not in keys and ("junk", "label-49", "*", "*") in keys


class Port:
    """A RunPort whose agents answer at once: `right` says 7, the others 8."""

    reply_topic = f"{P}/router/r1/inbox"

    async def run(self, request: RunRequest, timeout_s: float) -> Any:
        from shared.messages import RunResult

        text = "Final answer: 7" if request.agent_id == "right" else "Final answer: 8"
        base = {"dispatch_id": request.dispatch_id, "task_id": request.task_id, "agent_id": request.agent_id}
        return RunResult(node_id="n", text=text, completion_tokens=5, **base)

    def emit(self, task_id: str, event: str, data: dict[str, Any]) -> None:
        pass


def learned(teaches: bool) -> RoutingBrain:
    brain = RoutingBrain(seed=0)
    views = [AgentView(name, f"n-{name}", ("math",), "math") for name in ("right", "wrong-1", "wrong-2")]
    options = TaskOptions(cot_count=3, gold_answer="7", benchmark="junk-label", difficulty="hard")
    request = TaskRequest(task_id="t1", query="What is 3 + 4?", requirements=("poetry",), options=options)
    clock = itertools.count(0.0, 0.001)
    pipeline = TaskPipeline(request, brain, lambda: views, Port(), "r1", lambda: next(clock), teaches=teaches)
    asyncio.run(asyncio.wait_for(pipeline.execute(), 10))
    return brain


def test_only_a_teachers_labels_teach_the_router() -> None:
    taught, untaught = learned(teaches=True), learned(teaches=False)
    assert taught.weight("right") > taught.weight("wrong-1")  # the gold answer rewarded the lone right agent
    assert untaught.weight("right") < untaught.weight("wrong-1")  # agreement only: the majority earns more
    taught_keys = {tuple(row[1:4]) for row in taught.priors.to_dict()["counts"]}
    untaught_keys = {tuple(row[1:4]) for row in untaught.priors.to_dict()["counts"]}
    assert ("junk-label", "hard", "poetry") in taught_keys
    assert not any("junk-label" in key or "poetry" in key or "hard" in key for key in untaught_keys)


class Planner(Port):
    """Plans five steps for anyone asking for a plan; answers 7 to every step."""

    def __init__(self) -> None:
        self.requests: list[RunRequest] = []

    async def run(self, request: RunRequest, timeout_s: float) -> Any:
        from shared.messages import RunResult

        self.requests.append(request)
        base = {"dispatch_id": request.dispatch_id, "task_id": request.task_id, "agent_id": request.agent_id}
        if request.purpose == "plan":
            steps = ", ".join(f'"step {number}"' for number in range(1, 6))
            return RunResult(node_id="n", text=f'{{"subtasks": [{steps}]}}', **base)
        return RunResult(node_id="n", text="Final answer: 7", **base)


def test_an_accounts_step_cap_cuts_its_plans() -> None:
    port = Planner()
    views = [AgentView(name, f"n-{name}", ("planning", "math"), "math") for name in ("a", "b")]
    request = TaskRequest(task_id="t1", query="Plan this hard task.", options=TaskOptions(plan_k=2, difficulty="hard"))
    clock = itertools.count(0.0, 0.001)
    pipeline = TaskPipeline(request, RoutingBrain(seed=0), lambda: views, port, "r1", lambda: next(clock), max_steps=2)
    answer = asyncio.run(asyncio.wait_for(pipeline.execute(), 10))
    assert answer.plan == ("step 1", "step 2")
    assert all("at most 2 " in (r.instructions or "") for r in port.requests if r.purpose == "plan")
