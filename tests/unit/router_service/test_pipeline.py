"""TaskPipeline over an in-memory RunPort: scripted agents answer by agent id, after asyncio.sleep delays."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from router.brain import RoutingBrain
from router.pipeline import FINAL_STEP_NOTE, UNREACHED_NODE, NoAgentsError, TaskPipeline
from router.screening import AgentView
from shared.messages import RunRequest, RunResult, TaskAnswer, TaskOptions, TaskRequest

Script = Callable[[RunRequest], "tuple[str, float] | str"]
"""What an agent does with a request: (reply text, delay) or an error kind ('error:<kind>')."""


def answers(text: str, delay: float = 0.0) -> Script:
    return lambda request: (f"Working...\nFinal answer: {text}", delay)


def fails(kind: str = "backend_error") -> Script:
    return lambda request: f"error:{kind}"


@dataclass
class FakePort:
    """The pipeline's RunPort in memory: records every call in order and plays each agent's script."""

    scripts: dict[str, Script]
    reply_topic: str = "symphony/unit/router/r1/inbox"
    log: list[tuple[str, str]] = field(default_factory=list)
    requests: list[RunRequest] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    chunks: list[tuple[str, str]] = field(default_factory=list)

    async def run(self, request: RunRequest, timeout_s: float) -> RunResult:
        self.requests.append(request)
        self.log.append(("dispatch", request.agent_id))
        outcome = self.scripts[request.agent_id](request)
        base = {"dispatch_id": request.dispatch_id, "task_id": request.task_id, "agent_id": request.agent_id}
        if isinstance(outcome, str):
            await asyncio.sleep(0)
            self.log.append(("failed", request.agent_id))
            if outcome.startswith("lost:"):  # the router's own failure: no result came (timeout, node offline)
                return RunResult(node_id=UNREACHED_NODE, error=outcome.removeprefix("lost:"), **base)  # type: ignore[arg-type]
            return RunResult(node_id="n", error=outcome.removeprefix("error:"), **base)  # type: ignore[arg-type]
        text, delay = outcome
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.log.append(("cancelled", request.agent_id))
            raise
        self.log.append(("result", request.agent_id))
        return RunResult(node_id="n", text=text, latency_ms=delay * 1000, completion_tokens=5, **base)

    def emit(self, task_id: str, event: str, data: dict[str, Any]) -> None:
        self.events.append((event, data))

    def stream(self, task_id: str, phase: str, text: str) -> None:
        self.chunks.append((phase, text))

    def named(self, event: str) -> list[dict[str, Any]]:
        return [data for name, data in self.events if name == event]

    def solve_requests(self) -> list[RunRequest]:
        return [request for request in self.requests if request.purpose == "solve"]


def agents(*ids: str) -> list[AgentView]:
    return [AgentView(agent_id, f"node-{agent_id}", ("mathematical-reasoning",), "math") for agent_id in ids]


def task(query: str = "What is 6 * 7?", **options: Any) -> TaskRequest:
    """A task of client c; these tests read its steps, so it asks for the full trace unless told otherwise."""
    options.setdefault("trace", "full")
    return TaskRequest(task_id="t1", query=query, reply_topic="symphony/unit/reply/c", options=TaskOptions(**options))


def pipeline(
    port: FakePort, views: list[AgentView], request: TaskRequest, brain: RoutingBrain | None = None
) -> TaskPipeline:
    clock = itertools.count(0.0, 0.001)
    return TaskPipeline(request, brain or RoutingBrain(seed=0), lambda: views, port, "r1", lambda: next(clock))


def execute(port: FakePort, views: list[AgentView], request: TaskRequest, **kwargs: Any) -> TaskAnswer:
    """Run the pipeline to its answer in a fresh event loop (bounded)."""
    return asyncio.run(asyncio.wait_for(pipeline(port, views, request, **kwargs).execute(), 10))


# --- parallel CoT on distinct agents ------------------------------------------------------------------


def test_cot_runs_go_to_distinct_agents_in_parallel() -> None:
    port = FakePort({"a": answers("42", 0.03), "b": answers("42", 0.01), "c": answers("42", 0.02)})
    answer = execute(port, agents("a", "b", "c"), task(cot_count=3))
    dispatched = [agent for kind, agent in port.log if kind == "dispatch"]
    assert sorted(dispatched) == ["a", "b", "c"]
    first_result = next(index for index, (kind, _) in enumerate(port.log) if kind in ("result", "cancelled"))
    assert first_result == 3, f"a result came back before all runs were dispatched: {port.log}"
    assert answer.answer == "42"
    assert {event["agent"] for event in port.named("dispatched")} == {"a", "b", "c"}


def test_more_agents_than_runs_still_distinct() -> None:
    port = FakePort({name: answers("1") for name in "abcdef"})
    execute(port, agents(*"abcdef"), task(cot_count=5, top_l=6))
    dispatched = [agent for kind, agent in port.log if kind == "dispatch"]
    assert len(dispatched) == len(set(dispatched)) == 5


def test_fewer_agents_than_runs_reuses_agents() -> None:
    port = FakePort({"a": answers("5", 0.01), "b": answers("6", 0.02)})
    answer = execute(port, agents("a", "b"), task(cot_count=3))
    assert sorted(agent for kind, agent in port.log if kind == "dispatch") in (["a", "a", "b"], ["a", "b", "b"])
    assert answer.answer in ("5", "6")


# --- early stop ---------------------------------------------------------------------------------------


def test_two_of_three_agreeing_with_equal_weights_stop_early() -> None:
    """Weights 0.5 each: two agreeing ballots weigh 1.0 > 0 + 0.5 outstanding, so the third run is cancelled."""
    port = FakePort({"a": answers("42", 0.01), "b": answers("42", 0.02), "c": answers("7", 5.0)})
    answer = execute(port, agents("a", "b", "c"), task(cot_count=3))
    assert ("cancelled", "c") in port.log
    assert ("result", "c") not in port.log
    assert answer.answer == "42"
    assert {"subtask": 0, "early_stop": True, "outstanding": 1} in port.named("voted")
    (subtask,) = answer.subtasks
    assert sorted(ballot.agent_id for ballot in subtask.ballots) == ["a", "b"]


def test_runs_cut_short_by_an_early_stop_leave_nothing_in_the_reward_ledger() -> None:
    brain = RoutingBrain(seed=0)
    port = FakePort({"a": answers("42", 0.01), "b": answers("42", 0.02), "c": answers("7", 5.0)})
    execute(port, agents("a", "b", "c"), task(cot_count=3), brain=brain)
    assert ("cancelled", "c") in port.log
    assert len(brain.ledger) == 0


def test_no_early_stop_while_the_outstanding_run_could_still_win() -> None:
    port = FakePort({"a": answers("42", 0.01), "b": answers("7", 0.02), "c": answers("7", 0.05)})
    answer = execute(port, agents("a", "b", "c"), task(cot_count=3))
    assert ("result", "c") in port.log
    assert answer.answer == "7"
    assert not [event for event in port.named("voted") if event.get("early_stop")]


def test_a_reliable_outstanding_agent_prevents_early_stop() -> None:
    """Two agreeing agents of weight 0.3 (0.6) do not outweigh one outstanding agent of weight 0.9."""
    brain = RoutingBrain(seed=0)
    brain.reliability.update({"a": 0.3, "b": 0.3, "c": 0.9})
    port = FakePort({"a": answers("42", 0.01), "b": answers("42", 0.02), "c": answers("7", 0.05)})
    answer = execute(port, agents("a", "b", "c"), task(cot_count=3), brain=brain)
    assert ("result", "c") in port.log
    assert answer.answer == "7"


# --- failures and re-dispatch -------------------------------------------------------------------------


@pytest.mark.parametrize("top_l", [4, 3])
def test_failing_agent_is_redispatched_to_the_next_candidate(top_l: int) -> None:
    """The agent dispatched first fails (whichever LinUCB put first); its run moves to the fourth agent.

    With top_l 4 that agent is the unused Top-L candidate; with top_l 3 = cot_count (the defaults) no candidate
    is left, and it comes from a fresh screening.
    """
    broken: list[str] = []
    replies = iter(["42", "7", "42"])  # the two first successes disagree, so the spare's run is always awaited

    def first_dispatched_agent_fails(request: RunRequest) -> tuple[str, float] | str:
        if not broken:
            broken.append(request.agent_id)
        return "error:backend_error" if request.agent_id in broken else (f"Final answer: {next(replies)}", 0.01)

    port = FakePort(dict.fromkeys("abcd", first_dispatched_agent_fails))
    brain = RoutingBrain(seed=0)
    answer = execute(port, agents("a", "b", "c", "d"), task(cot_count=3, top_l=top_l), brain=brain)
    dispatched = [agent for kind, agent in port.log if kind == "dispatch"]
    assert len(dispatched) == 4
    assert len(set(dispatched)) == 4  # an agent runs a subtask at most once
    (event,) = port.named("redispatched")
    assert event["failed_agent"] == broken[0]
    assert event["next_agent"] == dispatched[3]
    assert event["error"] == "backend_error"
    assert answer.answer == "42"
    assert broken[0] not in {ballot.agent_id for ballot in answer.subtasks[0].ballots}
    assert dispatched[3] in {ballot.agent_id for ballot in answer.subtasks[0].ballots}
    assert brain.weight(broken[0]) < 0.5  # a failed run earns reward 0


def test_failed_runs_without_spare_candidates_still_answer_from_the_rest() -> None:
    port = FakePort({"a": fails("timeout"), "b": answers("9", 0.01), "c": answers("9", 0.02)})
    answer = execute(port, agents("a", "b", "c"), task(cot_count=3))
    assert answer.answer == "9"
    assert [event["next_agent"] for event in port.named("redispatched")] == [None]


def test_every_agent_failing_raises_no_agents() -> None:
    port = FakePort({"a": fails(), "b": fails("busy")})
    with pytest.raises(NoAgentsError, match="every agent failed"):
        execute(port, agents("a", "b"), task(cot_count=2))


def test_no_live_agents_raises_no_agents() -> None:
    port = FakePort({})
    with pytest.raises(NoAgentsError, match="no live agent"):
        execute(port, [], task())
    assert port.requests == []


@dataclass
class Fleet:
    """Live agents that may all go for a moment (a broker restart) and come back while the pipeline waits."""

    views: list[AgentView]
    back: list[AgentView] = field(default_factory=list)  # live again once the pipeline waits for agents
    waits: int = 0

    async def wait_for_agents(self) -> bool:
        self.waits += 1
        await asyncio.sleep(0.01)
        self.views[:] = self.back
        return bool(self.views)


def execute_on(port: FakePort, fleet: Fleet, request: TaskRequest) -> TaskAnswer:
    clock = itertools.count(0.0, 0.001)
    flow = TaskPipeline(
        request, RoutingBrain(seed=0), lambda: fleet.views, port, "r1", lambda: next(clock), fleet.wait_for_agents
    )
    return asyncio.run(asyncio.wait_for(flow.execute(), 10))


def test_a_task_that_finds_the_fleet_gone_for_a_moment_waits_for_it_instead_of_failing() -> None:
    port = FakePort({"a": answers("42"), "b": answers("42")})
    fleet = Fleet(views=[], back=agents("a", "b"))
    answer = execute_on(port, fleet, task(cot_count=2))
    assert answer.answer == "42" and fleet.waits == 1


def test_runs_failed_while_every_agent_was_offline_go_to_the_agents_that_come_back() -> None:
    fleet = Fleet(views=agents("a", "b"), back=agents("a", "b", "c"))

    def went_offline(agent: str) -> Script:
        def script(request: RunRequest) -> tuple[str, float] | str:
            fleet.views.clear()  # every node's Will was read: nothing is live
            return "error:timeout"

        return script

    port = FakePort({"a": went_offline("a"), "b": answers("42", 0.05), "c": answers("42")})
    answer = execute_on(port, fleet, task(cot_count=2))
    assert answer.answer == "42"
    assert [event["next_agent"] for event in port.named("redispatched")] == ["c"]


def test_a_fleet_that_stays_gone_still_ends_in_no_agents() -> None:
    fleet = Fleet(views=[])
    with pytest.raises(NoAgentsError, match="no live agent"):
        execute_on(FakePort({}), fleet, task())
    assert fleet.waits == 1


def test_no_wait_while_some_agent_is_live() -> None:
    fleet = Fleet(views=agents("a", "b"), back=agents("a", "b", "c"))
    port = FakePort({"a": fails(), "b": fails("busy")})
    with pytest.raises(NoAgentsError, match="every agent failed"):
        execute_on(port, fleet, task(cot_count=2))
    assert fleet.waits == 0


@dataclass
class Comebacks:
    """When each agent last (re)announced itself, on the real monotonic clock (the registry's view)."""

    announced: dict[str, float] = field(default_factory=dict)
    asked: int = 0

    def announced_since(self, agent_id: str, since: float) -> bool:
        self.asked += 1
        return self.announced.get(agent_id, float("-inf")) > since


def execute_with_comebacks(port: FakePort, views: list[AgentView], request: TaskRequest, comebacks: Comebacks) -> Any:
    flow = TaskPipeline(
        request, RoutingBrain(seed=0), lambda: views, port, "r1", time.monotonic, None, comebacks.announced_since
    )
    return asyncio.run(asyncio.wait_for(flow.execute(), 10))


def test_a_subtask_whose_agents_were_all_out_of_reach_waits_for_one_to_come_back() -> None:
    """Item 13 of issue 19: a broker restart made every run of a subtask go unanswered; the agents re-announce."""
    comebacks = Comebacks()
    sent: dict[str, int] = {}

    def lost_once(agent: str) -> Script:
        def script(request: RunRequest) -> tuple[str, float] | str:
            sent[agent] = sent.get(agent, 0) + 1
            if sent[agent] == 1:
                asyncio.get_running_loop().call_later(0.05, comebacks.announced.__setitem__, agent, time.monotonic())
                return "lost:timeout"
            return ("Final answer: 42", 0.0)

        return script

    port = FakePort({"a": lost_once("a"), "b": lost_once("b")})
    answer = execute_with_comebacks(port, agents("a", "b"), task(cot_count=2, deadline_s=5), comebacks)
    assert answer.answer == "42"
    assert sent == {"a": 2, "b": 2}  # each asked again once back, never a third time
    assert all(event["next_agent"] in ("a", "b") for event in port.named("redispatched"))


def test_lost_agents_that_never_come_back_end_the_task_at_its_deadline_not_before() -> None:
    comebacks = Comebacks()
    port = FakePort({"a": lambda request: "lost:timeout", "b": lambda request: "lost:backend_error"})
    started = time.monotonic()
    with pytest.raises(NoAgentsError, match="every agent failed"):
        execute_with_comebacks(port, agents("a", "b"), task(cot_count=2, deadline_s=0.5), comebacks)
    assert time.monotonic() - started >= 0.5
    assert port.log.count(("dispatch", "a")) == 1 and comebacks.asked > 0


def test_agents_that_answered_with_an_error_are_not_waited_for() -> None:
    """A refusal or a backend error comes from a live agent: the task fails at once, as before."""
    comebacks = Comebacks()
    port = FakePort({"a": fails(), "b": fails("busy")})
    started = time.monotonic()
    with pytest.raises(NoAgentsError, match="every agent failed"):
        execute_with_comebacks(port, agents("a", "b"), task(cot_count=2, deadline_s=5), comebacks)
    assert time.monotonic() - started < 4 and comebacks.asked == 0


# --- planning -----------------------------------------------------------------------------------------

PLAN_QUERY = "First add 2 and 2, then double the result and explain each step."
PLAN_JSON = '{"subtasks": ["add 2 and 2", "double the result"]}'


def planner_and_solver(plan_text: str | None, solutions: dict[str, str]) -> Script:
    """Answers plan requests with `plan_text` (None: fails) and solve requests from `solutions` by subtask."""

    def script(request: RunRequest) -> tuple[str, float] | str:
        if request.purpose == "plan":
            return "error:backend_error" if plan_text is None else (plan_text, 0.01)
        step = request.subtask.removesuffix(f"\n{FINAL_STEP_NOTE}")
        return (f"Final answer: {solutions.get(step, 'unknown')}", 0.01)

    return script


def test_plan_k_two_executes_the_voted_plan_in_order_with_context() -> None:
    solutions = {"add 2 and 2": "4", "double the result": "8"}
    scripts = {name: planner_and_solver(PLAN_JSON, solutions) for name in "abc"}
    port = FakePort(scripts)
    answer = execute(port, agents("a", "b", "c"), task(PLAN_QUERY, plan_k=2, cot_count=3))
    plan_requests = [request for request in port.requests if request.purpose == "plan"]
    assert len({request.agent_id for request in plan_requests}) == 2
    assert all(request.instructions for request in plan_requests)  # the planner prompt travels with the run
    assert answer.plan == ("add 2 and 2", "double the result")
    solve = port.solve_requests()
    subtasks = [request.subtask for request in solve]
    first_step_runs = subtasks.count("add 2 and 2")
    assert first_step_runs >= 2
    assert subtasks[:first_step_runs] == ["add 2 and 2"] * first_step_runs  # step 1 entirely before step 2
    assert set(subtasks[first_step_runs:]) == {f"double the result\n{FINAL_STEP_NOTE}"}  # the last step answers
    assert all(request.context == (f"Original task: {PLAN_QUERY}",) for request in solve[:first_step_runs])
    for request in solve[first_step_runs:]:
        task_context, step_context = request.context
        assert task_context == f"Original task: {PLAN_QUERY}"
        assert "add 2 and 2" in step_context and step_context.endswith(": 4")
    assert answer.answer == "8"
    assert [subtask.answer for subtask in answer.subtasks] == ["4", "8"]
    (planned,) = port.named("planned")
    assert planned["plan"] == ["add 2 and 2", "double the result"]


def test_plan_vote_prefers_the_plan_that_planners_agree_on() -> None:
    solutions = {"add 2 and 2": "4", "double the result": "8", "guess": "1"}
    other = '{"subtasks": ["guess"]}'
    scripts = {
        "a": planner_and_solver(PLAN_JSON, solutions),
        "b": planner_and_solver(PLAN_JSON, solutions),
        "c": planner_and_solver(other, solutions),
    }
    port = FakePort(scripts)
    answer = execute(port, agents("a", "b", "c"), task(PLAN_QUERY, plan_k=3, cot_count=1))
    assert answer.plan == ("add 2 and 2", "double the result")


def test_all_planners_failing_gives_a_one_step_plan() -> None:
    scripts = {
        "a": planner_and_solver(None, {PLAN_QUERY: "8"}),
        "b": planner_and_solver("I cannot plan this, sorry", {PLAN_QUERY: "8"}),
    }
    port = FakePort(scripts)
    answer = execute(port, agents("a", "b"), task(PLAN_QUERY, plan_k=2, cot_count=2))
    assert answer.plan == (PLAN_QUERY,)
    (planned,) = port.named("planned")
    assert planned["fallback"] is True
    assert sorted((r["planner"], r["why"]) for r in planned["rejected"]) == [
        ("a", "the run failed: backend_error"),
        ("b", "no step could be read from its reply"),
    ]
    assert {request.subtask for request in port.solve_requests()} == {PLAN_QUERY}
    assert answer.answer == "8"


CHANGE_QUERY = "A pen costs 3 dollars. I buy 4 pens and pay with a 20 dollar note. How much change do I get?"
CHANGE_PLAN = '{"subtasks": ["compute the total cost", "compute the change"]}'


def arithmetic_agent(request: RunRequest) -> tuple[str, float]:
    """Solves the steps only from what it is sent: the numbers are in the query, not in the steps."""
    if request.purpose == "plan":
        return (CHANGE_PLAN, 0.01)
    seen = "\n".join((*request.context, request.subtask))
    if request.subtask.startswith("compute the total cost"):
        return ("Final answer: 12" if "3 dollars" in seen and "4 pens" in seen else "Final answer: unknown", 0.01)
    known = "20 dollar" in seen and "Step 1 (compute the total cost): 12" in seen
    return ("Final answer: 8" if known else "Final answer: unknown", 0.01)


def test_every_step_sees_the_original_query_and_the_earlier_answers() -> None:
    """'compute the change' alone has no numbers: the agents need the query and step 1's answer to answer it."""
    port = FakePort(dict.fromkeys("abc", arithmetic_agent))
    answer = execute(port, agents("a", "b", "c"), task(CHANGE_QUERY, plan_k=2, cot_count=2, difficulty="hard"))
    assert answer.plan == ("compute the total cost", "compute the change")
    assert [subtask.answer for subtask in answer.subtasks] == ["12", "8"]
    assert answer.answer == "8"
    last_step = [request for request in port.solve_requests() if request.subtask.startswith("compute the change")]
    assert last_step and all(request.subtask.endswith(FINAL_STEP_NOTE) for request in last_step)


def test_planners_are_rewarded_and_the_winning_plan_earns_more() -> None:
    solutions = {"add 2 and 2": "4", "double the result": "8", "guess": "1"}
    scripts = {
        "a": planner_and_solver(PLAN_JSON, solutions),
        "b": planner_and_solver(PLAN_JSON, solutions),
        "c": planner_and_solver('{"subtasks": ["guess"]}', solutions),
    }
    brain = RoutingBrain(seed=0)
    port = FakePort(scripts)
    execute(port, agents("a", "b", "c"), task(PLAN_QUERY, plan_k=3, cot_count=1), brain=brain)
    (planners,) = [event for event in port.named("rewarded") if event.get("subtask") == -1]
    assert set(planners["rewards"]) == {"a", "b", "c"}
    assert planners["rewards"]["a"] == planners["rewards"]["b"] > planners["rewards"]["c"] > 0.0
    assert len(brain.ledger) == 0  # no dispatch is left unrewarded
    assert brain.priors.estimate("a", None, None, "planning") > brain.priors.estimate("c", None, None, "planning")


def chain_agent(plans: dict[str, str], finals: dict[str, str]) -> Callable[[str], Script]:
    """Agent `name` plans `plans[name]`; a final step answers `finals[step]`, earlier steps answer 'ok'."""

    def for_agent(name: str) -> Script:
        def script(request: RunRequest) -> tuple[str, float]:
            if request.purpose == "plan":
                return (plans[name], 0.01)
            if request.subtask.endswith(FINAL_STEP_NOTE):
                step = request.subtask.removesuffix(f"\n{FINAL_STEP_NOTE}")
                return (f"Final answer: {finals[step]}", 0.01)
            return ("Final answer: ok", 0.01)

        return script

    return for_agent


CHAIN_PLANS = {
    "a": '{"subtasks": ["list the facts", "add them up"]}',
    "b": '{"subtasks": ["read the question", "sum it"]}',
    "c": '{"subtasks": ["guess wildly"]}',
}
CHAIN_FINALS = {"add them up": "8", "sum it": "8", "guess wildly": "9"}


def test_chains_mode_runs_every_chain_and_votes_on_their_answers() -> None:
    make = chain_agent(CHAIN_PLANS, CHAIN_FINALS)
    port = FakePort({name: make(name) for name in "abc"})
    brain = RoutingBrain(seed=0)
    request = task(PLAN_QUERY, plan_k=3, plan_mode="chains", cot_count=3)
    answer = execute(port, agents("a", "b", "c"), request, brain=brain)
    steps = [request.subtask.split("\n")[0] for request in port.solve_requests()]
    assert sorted(steps) == sorted(["list the facts", "add them up", "read the question", "sum it", "guess wildly"])
    assert answer.answer == "8"  # two chains of three agree
    assert answer.plan in (("list the facts", "add them up"), ("read the question", "sum it"))
    (vote,) = [event for event in port.named("voted") if event.get("subtask") == -1]
    assert set(vote["weights"]) == {"chain-1", "chain-2", "chain-3"}
    (planners,) = [event for event in port.named("rewarded") if event.get("subtask") == -1]
    assert planners["rewards"]["a"] == planners["rewards"]["b"] > planners["rewards"]["c"]  # the winner bonus
    by_planner = {event["planner"]: event["rewards"] for event in port.named("rewarded") if "chain" in event}
    assert min(by_planner["a"].values()) > max(by_planner["c"].values())  # the losing chain's step earns no bonus
    assert len(brain.ledger) == 0


def test_chains_mode_rewards_the_correct_chain_and_every_planner_with_a_gold_answer() -> None:
    """With gold 9 the chain answering 9 earns more than the one answering 8, whatever the vote; the planner
    whose plan could not be read earns least; nothing is left unrewarded."""
    plans = {**CHAIN_PLANS, "b": "I would rather not plan."}
    make = chain_agent(plans, CHAIN_FINALS)
    port = FakePort({name: make(name) for name in "abc"})
    brain = RoutingBrain(seed=0)
    execute(port, agents("a", "b", "c"), task(PLAN_QUERY, plan_k=3, plan_mode="chains", gold_answer="9"), brain=brain)
    by_planner = {event["planner"]: event["rewards"] for event in port.named("rewarded") if "chain" in event}
    assert set(by_planner) == {"a", "c"}
    assert min(by_planner["c"].values()) > max(by_planner["a"].values())
    (planners,) = [event for event in port.named("rewarded") if event.get("subtask") == -1]
    assert planners["rewards"]["c"] > planners["rewards"]["a"] > planners["rewards"]["b"]
    assert len(brain.ledger) == 0


def test_chains_mode_steps_carry_the_query_and_the_chain_so_far() -> None:
    make = chain_agent(CHAIN_PLANS, CHAIN_FINALS)
    port = FakePort({name: make(name) for name in "abc"})
    execute(port, agents("a", "b", "c"), task(PLAN_QUERY, plan_k=2, plan_mode="chains"))
    (second,) = [request for request in port.solve_requests() if request.subtask.startswith("add them up")]
    assert second.context == (f"Original task: {PLAN_QUERY}", "Step 1 (list the facts): ok")


def test_difficulty_simple_skips_planning_and_hard_always_plans() -> None:
    scripts = {name: planner_and_solver(PLAN_JSON, {"add 2 and 2": "4", "double the result": "8"}) for name in "ab"}
    port = FakePort(scripts)
    execute(port, agents("a", "b"), task(PLAN_QUERY, plan_k=2, cot_count=1, difficulty="simple"))
    assert {request.purpose for request in port.requests} == {"solve"}
    assert port.named("planned")[0]["reason"] == "simple task"
    port = FakePort(scripts)
    answer = execute(port, agents("a", "b"), task("What is 6 * 7?", plan_k=2, cot_count=1, difficulty="hard"))
    assert "plan" in {request.purpose for request in port.requests}
    assert answer.plan == ("add 2 and 2", "double the result")


def test_priors_learned_from_gold_answers_feed_screening() -> None:
    """A wrong agent's prior for (gsm8k, hard, math) falls below 0.5 and the right agent's rises above it."""
    port = FakePort({"right": answers("42", 0.01), "wrong": answers("7", 0.01), "other": answers("42", 0.01)})
    brain = RoutingBrain(seed=0)
    views = agents("right", "wrong", "other")
    options = {"cot_count": 3, "gold_answer": "42", "benchmark": "gsm8k", "difficulty": "hard"}
    for _ in range(4):
        execute(port, views, task(**options), brain=brain)
    last = port.named("screened")[-1]
    prior = {candidate["agent"]: candidate["prior"] for candidate in last["candidates"]}
    assert prior["right"] > 0.5 > prior["wrong"]


def test_simple_query_skips_planning() -> None:
    port = FakePort({name: planner_and_solver(PLAN_JSON, {"What is 6 * 7?": "42"}) for name in "ab"})
    answer = execute(port, agents("a", "b"), task(plan_k=2, cot_count=2))
    assert [request.purpose for request in port.requests] == ["solve", "solve"]
    assert answer.plan == ("What is 6 * 7?",)


# --- learning -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("gold", "right_agent_ahead"), [("42", True), (None, False)])
def test_gold_answer_rewards_the_correct_agent(gold: str | None, right_agent_ahead: bool) -> None:
    """With a gold answer the lone correct agent out-earns the wrong majority; without one, agreement pays."""
    port = FakePort({"right": answers("42", 0.01), "wrong-1": answers("7", 0.01), "wrong-2": answers("7", 0.01)})
    brain = RoutingBrain(seed=0)
    answer = execute(port, agents("right", "wrong-1", "wrong-2"), task(cot_count=3, gold_answer=gold), brain=brain)
    assert answer.answer == "7"  # the vote itself does not see the gold answer
    (rewards,) = port.named("rewarded")
    assert (rewards["rewards"]["right"] > rewards["rewards"]["wrong-1"]) is right_agent_ahead
    assert (brain.weight("right") > brain.weight("wrong-1")) is right_agent_ahead
    assert brain.policy.count("right") == 1


def test_trace_has_the_pipeline_events_in_order() -> None:
    port = FakePort({"a": answers("3", 0.01), "b": answers("3", 0.02)})
    answer = execute(port, agents("a", "b"), task(cot_count=2))
    names = [name for name, _ in port.events]
    for earlier, later in itertools.pairwise(["received", "planned", "screened", "dispatched", "voted", "answered"]):
        assert names.index(earlier) < names.index(later)
    assert names.count("result") == 2
    assert port.named("answered")[0]["answer"] == answer.answer == "3"
    assert all(request.reply_topic == port.reply_topic for request in port.requests)


# --- streaming, direct runs, conversations, usage -------------------------------------------------------


def test_a_single_run_streams_when_asked_and_a_vote_never_does() -> None:
    port = FakePort({name: answers("42") for name in "abc"})
    execute(port, agents("a", "b", "c"), task(cot_count=1, stream=True))
    execute(port, agents("a", "b", "c"), task(cot_count=3, stream=True))
    execute(port, agents("a", "b", "c"), task(cot_count=1))
    assert [request.stream for request in port.solve_requests()] == [True, False, False, False, False]


def test_a_summary_trace_is_the_last_event_alone_and_a_full_trace_every_step() -> None:
    summary, full = FakePort({"a": answers("42")}), FakePort({"a": answers("42")})
    execute(summary, agents("a"), task(cot_count=1, trace="summary"))
    execute(full, agents("a"), task(cot_count=1))
    assert [name for name, _ in summary.events] == ["answered"]
    assert [name for name, _ in full.events][:2] == ["received", "planned"] and len(full.events) >= 6


@pytest.mark.parametrize("trace", ["summary", "full"])
def test_a_streamed_vote_streams_its_progress_whatever_its_trace(trace: str) -> None:
    port = FakePort({name: answers("42") for name in "abc"})
    execute(port, agents("a", "b", "c"), task(cot_count=3, stream=True, trace=trace))
    lines = [text for phase, text in port.chunks]
    assert {phase for phase, _ in port.chunks} == {"progress"}
    assert lines[0] == "plan of 1 step(s)" and lines[-1] == "voted: '42'"
    assert sum(line.startswith("dispatched to") for line in lines) == 3


def test_a_single_run_and_an_unstreamed_vote_stream_no_progress() -> None:
    port = FakePort({name: answers("42") for name in "abc"})
    execute(port, agents("a", "b", "c"), task(cot_count=1, stream=True))
    execute(port, agents("a", "b", "c"), task(cot_count=3))
    assert port.chunks == []


def test_a_direct_run_goes_to_the_named_agent_only() -> None:
    port = FakePort({name: answers(name) for name in "abc"})
    answer = execute(port, agents("a", "b", "c"), task(cot_count=3, agent_id="b", plan_k=3))
    assert {request.agent_id for request in port.requests} == {"b"}
    assert answer.answer == "b"
    with pytest.raises(NoAgentsError):
        execute(port, agents("a", "b"), task(cot_count=1, agent_id="z"))


def test_the_conversation_comes_before_the_task_in_the_runs_context() -> None:
    port = FakePort({"a": answers("Ann")})
    request = task("And what is my name?", cot_count=1).model_copy(
        update={"context": ("User: my name is Ann", "Assistant: Hello Ann")}
    )
    execute(port, agents("a"), request)
    assert port.solve_requests()[0].context == ("User: my name is Ann", "Assistant: Hello Ann")


def test_the_answer_counts_the_tokens_of_every_run_and_says_when_the_winner_hit_max_tokens() -> None:
    port = FakePort({name: answers("42") for name in "ab"})
    answer = execute(port, agents("a", "b"), task(cot_count=2))
    assert (answer.completion_tokens, answer.finish_reason) == (10, "stop")
    assert execute(port, agents("a"), task(cot_count=1, max_tokens=5)).finish_reason == "length"


def test_cancelling_the_task_cancels_its_outstanding_runs() -> None:
    """A passed deadline or a client gone cancels the pipeline: every run still out is cancelled with it."""
    port = FakePort({name: answers("42", 5.0) for name in "abc"})

    async def scenario() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(pipeline(port, agents("a", "b", "c"), task(cot_count=3)).execute(), 0.1)

    asyncio.run(scenario())
    assert sorted(agent for kind, agent in port.log if kind == "cancelled") == ["a", "b", "c"]
