"""llama.cpp with the bundled SmolLM2 under output constraints: every output is valid by construction, grammars
are converted once per constraint, and a run asked for a typed answer ends with one (two phases)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")

from edge_agent.backends import guidance
from edge_agent.backends.base import GenerationOptions, LogicError
from edge_agent.backends.llamacpp import LlamaCppBackend, json_grammar
from edge_agent.personas import build_messages, get_persona
from edge_agent.runtime.answering import reason_then_answer
from model_store import default_model_path
from router.constrained import (
    MAX_PLAN_STEPS,
    PLANNER_PROMPT,
    plan_constraint,
    plan_token_bound,
)
from shared.constraints import answer_type_constraint, violation
from shared.messages import OutputConstraint, RunRequest

pytestmark = pytest.mark.llamacpp


ENGINES = ["llguidance", "llama.cpp"] if guidance.available() else ["llama.cpp"]


@pytest.fixture(scope="module", params=ENGINES)
def backend(request: pytest.FixtureRequest) -> Iterator[LlamaCppBackend]:
    """The backend with each constraint engine: LLGuidance (the default where installed) and llama.cpp's grammar."""
    created = LlamaCppBackend(default_model_path(), n_ctx=1024, n_threads=2, seed=7, constraint_engine=request.param)
    yield created
    created.close()


def options(constraint: OutputConstraint | None, max_tokens: int = 96, temperature: float = 0.7) -> GenerationOptions:
    return GenerationOptions(max_tokens=max_tokens, temperature=temperature, seed=3, constraint=constraint)


def test_plans_decoded_under_the_plan_schema_are_valid_json(backend: LlamaCppBackend) -> None:
    constraint = plan_constraint(4)
    query = "Find the prime factors of 360, then compute their sum, then say if the sum is prime."
    messages = build_messages(PLANNER_PROMPT.format(max_steps=4), query)
    for seed in (1, 2, 3):
        # the router's budget for a constrained plan: room for every step at its widest in bytes, so it closes
        settings = options(constraint, plan_token_bound(4), temperature=0.3).model_copy(update={"seed": seed})
        text = backend.generate(messages, settings).text
        assert violation(text, constraint) is None, text
        assert 1 <= len(json.loads(text)["subtasks"]) <= 4


@pytest.mark.parametrize(
    "query",
    [
        "Convertis 72 degrés Fahrenheit en Celsius, puis dis si la température permet de nager dehors.",
        "Найди простые множители числа 360, затем вычисли их сумму.",
        "一支笔三美元。汤姆买了七支笔，付了五十美元。先算出笔的总价，然后算出找零。",  # noqa: RUF001 CJK commas
    ],
    ids=["french", "russian", "chinese"],
)
def test_a_plan_for_a_query_in_another_script_is_valid_and_closes(backend: LlamaCppBackend, query: str) -> None:
    """Steps may be written in any script; a character can take several tokens, and the budget still covers it."""
    constraint, budget = plan_constraint(), plan_token_bound()
    messages = build_messages(PLANNER_PROMPT.format(max_steps=MAX_PLAN_STEPS), query)
    generation = backend.generate(messages, options(constraint, budget, temperature=0.3))
    assert violation(generation.text, constraint) is None, generation.text
    assert generation.completion_tokens < budget  # closed by the grammar, not cut by the budget
    assert len(generation.text.encode()) + 1 <= budget


def test_a_tool_call_schema_gives_a_call_with_valid_arguments(backend: LlamaCppBackend) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"const": "get_weather"},
            "arguments": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
                "required": ["city", "unit"],
            },
        },
        "required": ["name", "arguments"],
    }
    constraint = OutputConstraint(type="json_schema", json_schema=schema)
    messages = build_messages("Call the tool.", "What is the weather in Paris?")
    text = backend.generate(messages, options(constraint, 64, 0.0)).text
    assert violation(text, constraint) is None, text


@pytest.mark.parametrize(
    "constraint",
    [
        answer_type_constraint("number"),
        answer_type_constraint("choice", ("yes", "no")),
        OutputConstraint(type="regex", pattern=r"[A-Z][a-z]{1,12} [0-9]{2}"),
    ],
    ids=["number", "choice", "regex"],
)
def test_regex_and_choice_grammars_hold(backend: LlamaCppBackend, constraint: OutputConstraint) -> None:
    messages = build_messages(get_persona("math").system_prompt, "Is 7 a prime number? How many days in June?")
    text = backend.generate(messages, options(constraint, 24)).text
    assert violation(text, constraint) is None, text


def test_streaming_honours_the_constraint_too(backend: LlamaCppBackend) -> None:
    constraint = answer_type_constraint("choice", ("red", "green", "blue"))
    pieces: list[str] = []
    sink = lambda piece: pieces.append(piece) is None  # noqa: E731 - keep going
    generation = backend.stream(build_messages("Answer.", "Colour of grass?"), options(constraint, 8), sink)
    assert "".join(pieces).strip() == generation.text and generation.text in constraint.choices


def test_each_constraint_is_converted_once(backend: LlamaCppBackend) -> None:
    constraint = OutputConstraint(type="regex", pattern=r"[0-9]{1,3}")
    before = backend.grammars.compiled
    for _ in range(3):
        backend.generate(build_messages("Answer.", "2 + 2?"), options(constraint, 4))
    assert backend.grammars.compiled == before + 1


def test_json_strings_hold_no_raw_control_characters() -> None:
    """llama-cpp-python's converter lets a raw newline into a string; JSON parsers refuse it, so the grammar may not."""
    grammar = json_grammar({"type": "object", "properties": {"a": {"type": "string"}}})
    assert r'[^"\\\x7F\x00-\x1F]' in grammar and r'[^"\\] |' not in grammar


def test_a_constraint_no_grammar_can_express_is_a_bad_request(backend: LlamaCppBackend) -> None:
    with pytest.raises(LogicError, match="cannot turn this regex constraint into a grammar"):
        backend.generate(build_messages("Answer.", "x"), options(OutputConstraint(type="regex", pattern=r"(a)\1")))


def test_two_phases_end_with_a_number(backend: LlamaCppBackend) -> None:
    number = answer_type_constraint("number")
    request = RunRequest(
        dispatch_id="d",
        task_id="t",
        agent_id="a",
        subtask="Tom has 3 apples and buys 4 more. How many now?",
        reply_topic="x/y",
        answer_constraint=number,
    )
    messages = build_messages(get_persona("math").system_prompt, request.subtask)
    answered = reason_then_answer(backend.generate, messages, options(None, 64), request)
    assert answered.answer is not None and re.fullmatch(number.pattern or "", answered.answer)
    assert answered.generation.text.endswith(f"Final answer: {answered.answer}")


SCHEMAS = {
    "nested": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 20},
            "weather": {
                "type": "object",
                "properties": {
                    "temp": {"type": "integer", "minimum": -50, "maximum": 50},
                    "sunny": {"type": "boolean"},
                },
                "required": ["temp", "sunny"],
                "additionalProperties": False,
            },
        },
        "required": ["city", "weather"],
        "additionalProperties": False,
    },
    "array": {"type": "array", "items": {"type": "string", "pattern": "^[a-z ]{1,12}$"}, "minItems": 2, "maxItems": 4},
    "enum_and_number": {
        "type": "object",
        "properties": {"unit": {"enum": ["kg", "lb"]}, "amount": {"type": "integer", "minimum": 0, "maximum": 999}},
        "required": ["unit", "amount"],
        "additionalProperties": False,
    },
}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_outputs_are_valid_against_their_schema(backend: LlamaCppBackend, name: str) -> None:
    if backend.constraint_engine != "llguidance":
        pytest.skip("llama-cpp-python's converter ignores minimum and maximum (it wrote 1000 for at most 999)")
    constraint = OutputConstraint(type="json_schema", json_schema=SCHEMAS[name])
    messages = build_messages("Answer in JSON.", "Describe the weather in Oslo and what a parcel weighs.")
    for seed in (1, 2, 3):
        settings = options(constraint, 160).model_copy(update={"seed": seed})
        generation = backend.generate(messages, settings)
        assert generation.completion_tokens < 160, generation.text  # closed, not cut
        assert violation(generation.text, constraint) is None, generation.text


def test_llguidance_is_the_default_engine_where_installed() -> None:
    created = LlamaCppBackend(default_model_path(), n_ctx=256, n_threads=1)
    try:
        assert created.constraint_engine == ("llguidance" if guidance.available() else "llama.cpp")
    finally:
        created.close()


@pytest.mark.skipif(not guidance.available(), reason="llguidance is not installed")
def test_a_schema_llguidance_cannot_take_falls_back_to_the_llama_cpp_grammar() -> None:
    created = LlamaCppBackend(default_model_path(), n_ctx=512, n_threads=2, seed=7, constraint_engine="llguidance")
    try:
        schema = {"type": "array", "items": {"type": "integer"}, "uniqueItems": True, "maxItems": 3}
        constraint = OutputConstraint(type="json_schema", json_schema=schema)
        assert not isinstance(created.grammars.get(constraint), guidance.GuidanceGrammar)
        text = created.generate(build_messages("Answer in JSON.", "Three numbers?"), options(constraint, 48)).text
        assert isinstance(json.loads(text), list), text
    finally:
        created.close()
