"""Output constraints as data: the wire model, answer types, GBNF from regexes and choices, valid examples."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from shared.constraints import (
    NUMBER_PATTERN,
    ConstraintError,
    answer_type_constraint,
    canonical_answer,
    example_output,
    to_gbnf,
    violation,
)
from shared.messages import OutputConstraint, RunRequest, decode, encode

PLAN_SCHEMA = {
    "type": "object",
    "properties": {"subtasks": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}},
    "required": ["subtasks"],
}


def test_a_constraint_carries_exactly_its_own_body() -> None:
    with pytest.raises(ValidationError):
        OutputConstraint(type="regex")
    with pytest.raises(ValidationError):
        OutputConstraint(type="choice", choices=("a",), pattern="a")
    with pytest.raises(ValidationError):
        OutputConstraint(type="json_schema", pattern="a")


def test_a_run_request_with_a_constraint_crosses_the_wire() -> None:
    constraint = OutputConstraint(type="json_schema", json_schema=PLAN_SCHEMA)
    request = RunRequest(
        dispatch_id="d", task_id="t", agent_id="a", subtask="x", reply_topic="symphony/x/reply/c", constraint=constraint
    )
    assert decode(encode(request)) == request
    assert decode(encode(request.model_copy(update={"constraint": None}))).constraint is None


@pytest.mark.parametrize(
    ("answer_type", "good", "bad"),
    [
        ("number", ["42", "-3.5", "1000"], ["42 dollars", "", "1,000"]),
        ("short_text", ["Paris", "the red one"], ["", "two\nlines"]),
    ],
)
def test_answer_types_accept_their_values_only(answer_type: str, good: list[str], bad: list[str]) -> None:
    constraint = answer_type_constraint(answer_type)
    assert all(violation(text, constraint) is None for text in good)
    assert all(violation(text, constraint) is not None for text in bad)


def test_choice_and_json_answer_types_need_their_body() -> None:
    with pytest.raises(ConstraintError):
        answer_type_constraint("choice")
    assert answer_type_constraint("choice", ("A", "B")).choices == ("A", "B")
    assert answer_type_constraint("json").json_schema == {"type": "object"}
    with pytest.raises(ConstraintError):
        answer_type_constraint("essay")


def test_json_answers_are_canonical_so_equal_values_vote_together() -> None:
    constraint = OutputConstraint(type="json_schema", json_schema={"type": "object"})
    first = canonical_answer('{"b": 1, "a": [1, 2]}', constraint)
    assert first == canonical_answer('{ "a":[1,2],\n "b":1 }', constraint) == '{"a":[1,2],"b":1}'
    assert canonical_answer("{not json", constraint) is None


def test_schema_violations_are_reported() -> None:
    constraint = OutputConstraint(type="json_schema", json_schema=PLAN_SCHEMA)
    assert violation('{"subtasks": ["a"]}', constraint) is None
    assert "subtasks" in (violation('{"subtasks": []}', constraint) or "")


@pytest.mark.parametrize(
    ("pattern", "grammar"),
    [
        ("yes|no", 'root ::= ("y" "e" "s" | "n" "o")'),
        (r"\d{3}", "root ::= ([0-9]){3}"),
        (r"[A-C]+", "root ::= ([A-C])+"),
        (r"a\.b?", 'root ::= "a" "." ("b")?'),
        (r"[^\n]{1,5}", "root ::= ([^\\x0A]){1,5}"),
        ('say "hi"', 'root ::= "s" "a" "y" " " "\\"" "h" "i" "\\""'),
    ],
)
def test_regexes_become_gbnf(pattern: str, grammar: str) -> None:
    assert to_gbnf(OutputConstraint(type="regex", pattern=pattern)) == grammar


def test_choices_become_gbnf_alternatives_with_escapes() -> None:
    constraint = OutputConstraint(type="choice", choices=("A", 'say "B"'))
    assert to_gbnf(constraint) == 'root ::= "A" | "say \\"B\\""'


@pytest.mark.parametrize("pattern", [r"(a)\1", r"a(?=b)", "(?<!x)y"])
def test_regexes_a_grammar_cannot_express_are_refused(pattern: str) -> None:
    with pytest.raises(ConstraintError):
        to_gbnf(OutputConstraint(type="regex", pattern=pattern))


def test_an_invalid_regex_is_refused_not_crashing() -> None:
    with pytest.raises(ConstraintError):
        to_gbnf(OutputConstraint(type="regex", pattern="(unclosed"))


@pytest.mark.parametrize("pattern", [NUMBER_PATTERN, r"\d{3}-[A-Z]+", r"[^abc]?x\.y\w*\s", "(cat|dog)s?"])
def test_examples_of_a_regex_match_it(pattern: str) -> None:
    assert re.fullmatch(pattern, example_output(OutputConstraint(type="regex", pattern=pattern)))


def test_examples_prefer_the_given_answer_when_it_fits() -> None:
    number = answer_type_constraint("number")
    assert example_output(number, preferred="42") == "42"
    assert example_output(number, preferred="forty-two") == "0"


def test_json_examples_validate_and_hold_the_fill_text() -> None:
    constraint = OutputConstraint(type="json_schema", json_schema=PLAN_SCHEMA)
    output = example_output(constraint, fill="the task")
    assert json.loads(output) == {"subtasks": ["the task"]} and violation(output, constraint) is None


def test_json_examples_follow_pydantic_references() -> None:
    schema = {
        "$defs": {"City": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}},
        "type": "object",
        "properties": {"city": {"$ref": "#/$defs/City"}, "count": {"type": "integer", "minimum": 1}},
        "required": ["city", "count"],
    }
    output = example_output(OutputConstraint(type="json_schema", json_schema=schema), fill="Paris")
    assert json.loads(output) == {"city": {"name": "Paris"}, "count": 1}
