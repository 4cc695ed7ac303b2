"""The router's side: plans by construction, typed answers compared canonically, constrained runs routed only to
agents that announce the constraint (or a clear reason when none does). An in-memory RunPort plays the agents."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from router.brain import RoutingBrain
from router.constrained import (
    MAX_PLAN_STEPS,
    MAX_STEP_CHARS,
    PLANNER_PROMPT,
    STEP_PATTERN,
    plan_constraint,
    plan_token_bound,
)
from router.pipeline import NoAgentsError, TaskPipeline
from router.screening import AgentView
from shared.constraints import answer_type_constraint, example_output, violation
from shared.messages import OutputConstraint, RunRequest, RunResult, TaskAnswer, TaskOptions, TaskRequest

ALL_KINDS = ("json_schema", "regex", "choice")
Reply = Callable[[RunRequest], tuple[str, str | None]]


@dataclass
class Port:
    replies: dict[str, Reply]
    reply_topic: str = "symphony/unit/router/r1/inbox"
    requests: list[RunRequest] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def run(self, request: RunRequest, timeout_s: float) -> RunResult:
        self.requests.append(request)
        await asyncio.sleep(0)
        text, answer = self.replies[request.agent_id](request)
        base = {"dispatch_id": request.dispatch_id, "task_id": request.task_id, "agent_id": request.agent_id}
        return RunResult(node_id="n", text=text, answer=answer, completion_tokens=3, **base)

    def emit(self, task_id: str, event: str, data: dict[str, Any]) -> None:
        self.events.append((event, data))


def view(agent_id: str, constraints: tuple[str, ...] = ALL_KINDS) -> AgentView:
    return AgentView(agent_id, f"node-{agent_id}", ("mathematical-reasoning",), "math", constraints=constraints)


def execute(port: Port, views: list[AgentView], query: str, **options: Any) -> TaskAnswer:
    request = TaskRequest(
        task_id="t1",
        query=query,
        reply_topic="symphony/unit/reply/c",
        options=TaskOptions(**{"trace": "full", **options}),
    )
    clock = itertools.count(0.0, 0.001)
    pipeline = TaskPipeline(request, RoutingBrain(seed=0), lambda: views, port, "r1", lambda: next(clock))
    return asyncio.run(asyncio.wait_for(pipeline.execute(), 10))


def planner_then_solver(plan: str, answer: str) -> Reply:
    return lambda request: (plan, None) if request.purpose == "plan" else (f"so...\nFinal answer: {answer}", answer)


HARD = "First find the prime factors of 360, then add them up, then say whether the sum is prime."


def test_planners_that_can_constrain_plan_under_the_schema_without_an_example() -> None:
    port = Port({name: planner_then_solver('{"subtasks": ["factor 360", "add the factors"]}', "10") for name in "ab"})
    answer = execute(port, [view("a"), view("b")], HARD, plan_k=2, cot_count=1)
    planning = [r for r in port.requests if r.purpose == "plan"]
    assert len(planning) == 2 and all(r.constraint == plan_constraint() for r in planning)
    prompt = PLANNER_PROMPT.format(max_steps=MAX_PLAN_STEPS)
    assert all(r.subtask == HARD and r.instructions == prompt for r in planning)
    assert "subtask" not in PLANNER_PROMPT.split("subtasks", 1)[1].split(".")[0]  # no example plan in the prompt
    assert '{"' not in PLANNER_PROMPT and "[" not in PLANNER_PROMPT
    assert answer.plan == ("factor 360", "add the factors")
    (planned,) = [data for event, data in port.events if event == "planned"]
    assert sorted(planned["constrained"]) == ["a", "b"]


def test_planners_that_cannot_constrain_keep_the_old_prompt_and_the_repairs() -> None:
    port = Port({"a": planner_then_solver("1. factor 360\n2. add the factors", "10")})
    answer = execute(port, [view("a", ())], HARD, plan_k=2, cot_count=1)
    planning = [r for r in port.requests if r.purpose == "plan"]
    assert planning and all(r.constraint is None and "Return the JSON now." in r.subtask for r in planning)
    assert answer.plan == ("factor 360", "add the factors")


def test_the_plan_schema_holds_one_to_max_steps_non_empty_strings() -> None:
    constraint = plan_constraint(3)
    assert violation('{"subtasks": ["a", "b", "c"]}', constraint) is None
    for bad in ('{"subtasks": []}', '{"subtasks": [""]}', '{"subtasks": ["a","b","c","d"]}', '{"steps": ["a"]}'):
        assert violation(bad, constraint) is not None


PLAN_START = "Find the prime factors of 360"


@pytest.mark.parametrize(
    "step",
    [
        'say "hi"',
        "back\\slash",
        "tab\there",
        "line\u2028separator",
        "zero\u200bwidth",
        "no\u00a0break",
        "emoji \U0001f600",
        "x" * (MAX_STEP_CHARS + 1),
    ],
    ids=["quote", "backslash", "control", "line-separator", "zero-width", "no-break-space", "astral", "too-long"],
)
def test_a_plan_step_has_no_escape_control_invisible_or_four_byte_character(step: str) -> None:
    assert violation(json.dumps({"subtasks": [PLAN_START, step]}, ensure_ascii=False), plan_constraint())


@pytest.mark.parametrize(
    "step",
    ["Calculer la température en degrés", "Вычислить сумму множителей", "计算三支笔的价格", "x" * MAX_STEP_CHARS],
    ids=["french", "russian", "chinese", "longest"],
)
def test_a_plan_step_is_printable_text_in_any_script(step: str) -> None:
    assert violation(json.dumps({"subtasks": [PLAN_START, step]}, ensure_ascii=False), plan_constraint()) is None


@pytest.mark.parametrize(("max_steps", "step_chars"), [(1, 60), (3, 48), (MAX_PLAN_STEPS, MAX_STEP_CHARS)])
def test_the_plan_budget_covers_the_longest_plan_the_schema_admits_in_bytes(max_steps: int, step_chars: int) -> None:
    """Every character of a step at its widest (three bytes of UTF-8, as 中), every optional space taken: a
    byte-level BPE token holds a byte or more, so the plan's bytes bound its tokens."""
    for widest in ("~", "é", "中"):
        step = '"' + widest * step_chars + '" '
        longest = '{ "subtasks" : [ ' + ", ".join([step] * max_steps) + "] } "
        assert violation(longest, plan_constraint(max_steps, 1, step_chars)) is None
        assert len(longest.encode()) < plan_token_bound(max_steps, step_chars)


def test_the_kits_json_grammar_allows_at_most_one_space_between_tokens_as_the_plan_budget_assumes() -> None:
    """plan_token_bound counts one optional space per separator; a converter that allowed runs of whitespace (as
    llama.cpp's newer one does: a newline and 20 indents) would make a plan longer than its budget."""
    llamacpp = pytest.importorskip("edge_agent.backends.llamacpp")
    pytest.importorskip("llama_cpp")
    grammar = llamacpp.json_grammar(plan_constraint().json_schema or {})
    assert 'space ::= " "?' in grammar.splitlines()
    assert "char ::=" not in grammar  # the steps' own character class: no escape sequences


def test_planners_get_the_budget_of_the_longest_plan() -> None:
    port = Port({name: planner_then_solver('{"subtasks": ["factor 360", "add the factors"]}', "10") for name in "a"})
    execute(port, [view("a")], HARD, plan_k=2, cot_count=1, max_tokens=64)
    planning = [r for r in port.requests if r.purpose == "plan"]
    assert planning and all(r.sampling.max_tokens == plan_token_bound() for r in planning)


def test_a_scripted_or_echo_planner_still_plans_its_task_text_under_the_pattern() -> None:
    assert json.loads(example_output(plan_constraint(), fill="Find the factors of 360"))["subtasks"] == [
        "Find the factors of 360"
    ]
    assert json.loads(example_output(plan_constraint(), fill='Say "yes"'))["subtasks"] == ["a"]
    assert STEP_PATTERN.startswith("^") and STEP_PATTERN.endswith("$")  # anchored, as llama.cpp's converter needs


def test_typed_answers_vote_on_canonical_values() -> None:
    """Three runs say 42, 42.0 and 1000: the constrained answers compare as numbers, not prose."""
    said = {"a": "42", "b": "42.0", "c": "1000"}
    port = Port({name: (lambda request, n=name: (f"thinking\nFinal answer: {said[n]}", said[n])) for name in said})
    answer = execute(
        port, [view("a"), view("b"), view("c")], "What is 6 x 7?", cot_count=3, answer=answer_type_constraint("number")
    )
    assert answer.answer in ("42", "42.0")
    assert all(r.answer_constraint == answer_type_constraint("number") for r in port.requests)
    methods = {data["method"] for event, data in port.events if event == "result"}
    assert methods == {"constrained"}


def test_json_outputs_vote_on_their_canonical_form() -> None:
    texts = {
        "a": '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}',
        "b": '{"arguments": {"unit": "C", "city": "Paris"}, "name": "get_weather"}',
        "c": '{"name": "get_time", "arguments": {}}',
    }
    port = Port({name: (lambda request, n=name: (texts[n], None)) for name in texts})
    output = OutputConstraint(type="json_schema", json_schema={"type": "object"})
    answer = execute(port, [view("a"), view("b"), view("c")], "Weather in Paris?", cot_count=3, output=output)
    assert json.loads(answer.answer)["name"] == "get_weather"
    (voted,) = [data for event, data in port.events if event == "voted"]
    assert max(voted["weights"].values()) > min(voted["weights"].values())  # a and b counted as one answer


def test_constrained_runs_go_only_to_agents_that_announce_the_kind() -> None:
    port = Port({name: (lambda request: ("Paris", "Paris")) for name in "abc"})
    views = [view("a", ("json_schema",)), view("b", ALL_KINDS), view("c", ())]
    execute(port, views, "Capital of France?", cot_count=3, answer=answer_type_constraint("short_text"))
    assert {r.agent_id for r in port.requests} == {"b"}


def test_no_agent_that_can_honour_the_constraint_says_why() -> None:
    port = Port({"a": lambda request: ("x", None)})
    with pytest.raises(NoAgentsError, match="no live agent can honour a choice output constraint"):
        execute(port, [view("a", ("json_schema",))], "A or B?", answer=answer_type_constraint("choice", ("A", "B")))
    assert port.requests == []


def test_a_valid_but_off_topic_constrained_plan_is_not_used() -> None:
    """Decoded under the schema, a small model sometimes plans dates; the task then runs on the query itself."""
    port = Port({"a": planner_then_solver('{"subtasks": ["2018-08-28 13:12:13"]}', "10")})
    answer = execute(port, [view("a")], HARD, plan_k=2, cot_count=1)
    assert answer.plan == (HARD,)
    (planned,) = [data for event, data in port.events if event == "planned"]
    assert planned.get("fallback") is True
    # the trace keeps what the planners wrote and why it was not used, so a user sees the model's plan
    why = "off topic: step 1 of 1 shares no word with the task"
    assert planned["rejected"] == [{"planner": "a", "steps": ["2018-08-28 13:12:13"], "why": why}] * 2
    assert planned["constrained"] == ["a", "a"]
