"""Planner prompt, output parsing and repair, and the simple-query shortcut."""

from __future__ import annotations

import json

import pytest

from router.planning import PlanParseError, fallback_plan, is_simple_query, parse_plan, plan_prompt

PARSE_CASES = [
    ('{"subtasks": ["Find x", "Check x"]}', ["Find x", "Check x"]),
    ('```json\n{"subtasks": ["a", "b"]}\n```', ["a", "b"]),
    ('```\n{"subtasks": ["a"]}\n```\nLet me know!', ["a"]),
    ('Sure, here is the plan: {"subtasks": ["a", "b"]} Hope this helps.', ["a", "b"]),
    ("{'subtasks': ['Compute 2+2', 'Double it']}", ["Compute 2+2", "Double it"]),
    ('{"subtasks": ["a", "b",],}', ["a", "b"]),
    ("{'subtasks': ['a', 'b',]}", ["a", "b"]),
    ('["step one", "step two"]', ["step one", "step two"]),
    ('{"steps": [{"description": "look up"}, {"task": "summarize"}]}', ["look up", "summarize"]),
    ('{"subtasks": ["  a  ", "", "a", "A", "b", "a"]}', ["a", "b", "a"]),
    ("Plan:\n1. Find the data\n2) Clean it\n3: Plot it", ["Find the data", "Clean it", "Plot it"]),
    (
        "- gather sources\n* summarize them\n• write the report",
        ["gather sources", "summarize them", "write the report"],
    ),
    ("Step 1: read\nStep 2: answer", ["read", "answer"]),
    # the steps' own numbering inside JSON (SmolLM2 writes it under the plan schema) is not part of the step
    (
        '{"subtasks": ["1. Cost of the pens", "2) The change", "Step 3: Check", "3x + 7 = 22"]}',
        ["Cost of the pens", "The change", "Check", "3x + 7 = 22"],
    ),
    # cut off by the token limit: keep the complete items
    ('{"subtasks": ["Compute 7*3", "Subtract from 50", "Say the', ["Compute 7*3", "Subtract from 50"]),
    ('{"subtasks": [{"description": "Price 7 pens"}, {"description": "Change', ["Price 7 pens"]),
    ('{"subtasks": ["say \\"hi\\" twice", "b"', ['say "hi" twice']),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES)
def test_parse_plan(text: str, expected: list[str]) -> None:
    assert parse_plan(text) == expected


def test_more_than_eight_steps_are_truncated_in_order() -> None:
    text = json.dumps({"subtasks": [f"step {n}" for n in range(12)]})
    assert parse_plan(text) == [f"step {n}" for n in range(8)]
    assert parse_plan(text, max_steps=3) == ["step 0", "step 1", "step 2"]


@pytest.mark.parametrize(
    "text", ["", "I don't know how to plan this.", '{"subtasks": []}', '{"other": 1}', "{{{ [[[", '["", "  "]']
)
def test_garbage_raises_plan_parse_error(text: str) -> None:
    with pytest.raises(PlanParseError):
        parse_plan(text)


def test_plan_parse_error_is_a_value_error() -> None:
    assert issubclass(PlanParseError, ValueError)


def test_plan_prompt_asks_for_strict_json() -> None:
    messages = plan_prompt("Plan a trip to Rome", max_steps=5)
    assert [message["role"] for message in messages] == ["system", "user"]
    assert '{"subtasks": [' in messages[0]["content"]
    assert "5" in messages[0]["content"]
    assert "Plan a trip to Rome" in messages[1]["content"]
    assert "The last subtask must produce the final answer" in messages[0]["content"]  # as the seed's prompt


def test_fallback_plan_is_the_query() -> None:
    assert fallback_plan("What is 2+2?") == ["What is 2+2?"]


@pytest.mark.parametrize(
    ("query", "simple"),
    [
        ("What is 2+2?", True),
        ("Who wrote Hamlet?", True),
        ("Translate 'bonjour' to English", True),
        ("First find the capital of France, then compute its population density.", False),
        ("What is 2+2? And what is 3+3?", False),
        ("Write an essay on climate policy and compare three countries", False),
        ("Read the file.\nSummarize it.", False),
        (" ".join(["word"] * 40) + "?", False),
        ("", False),
    ],
)
def test_is_simple_query(query: str, simple: bool) -> None:
    assert is_simple_query(query) is simple
