"""Capability vocabulary, requirement inference and match scores."""

from __future__ import annotations

import pytest

from router.capabilities import CAPABILITIES, infer_requirements, match_score, normalize_tag


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("math", "mathematical-reasoning"),
        ("Maths", "mathematical-reasoning"),
        ("arithmetic", "mathematical-reasoning"),
        (" Mathematical_Reasoning ", "mathematical-reasoning"),
        ("mathematical reasoning", "mathematical-reasoning"),
        ("coding", "code-implementation"),
        ("CODE", "code-implementation"),
        ("programming", "code-implementation"),
        ("search", "retrieval"),
        ("summarize", "summarization"),
        ("Tool Use", "tool-use"),
        ("tool_use", "tool-use"),
        ("fact check", "fact-checking"),
        ("debug", "debugging"),
        ("writing", "writing"),
        ("astrology", None),
        ("", None),
    ],
)
def test_normalize_tag(tag: str, expected: str | None) -> None:
    assert normalize_tag(tag) == expected


def test_every_vocabulary_tag_normalises_to_itself() -> None:
    assert [normalize_tag(tag) for tag in CAPABILITIES] == list(CAPABILITIES)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("compute 17*3", ["mathematical-reasoning"]),
        ("What is 12 + 30?", ["mathematical-reasoning"]),
        ("write a python function that reverses a list", ["code-implementation"]),
        ("Summarize this article", ["summarization"]),
        ("Write an essay about rivers", ["writing"]),
        ("Fix the bug behind this traceback", ["debugging"]),
        ("Who painted the Mona Lisa?", ["retrieval"]),
        ("Hello there", []),
    ],
)
def test_infer_requirements(text: str, expected: list[str]) -> None:
    assert infer_requirements(text) == expected


def test_math_agent_beats_writer_on_a_math_subtask() -> None:
    subtask = "Compute the sum of 17 and 25"
    math_agent = match_score(subtask, [], ["math", "verification"], "careful mathematician")
    writer = match_score(subtask, [], ["writing", "summarization"], "a novelist")
    assert math_agent > writer + 0.5


def test_writer_beats_math_agent_on_a_writing_subtask() -> None:
    subtask = "Write a short poem about autumn"
    math_agent = match_score(subtask, ["writing"], ["math"], "careful mathematician")
    writer = match_score(subtask, ["writing"], ["writing", "summarization"], "a poet")
    assert writer > math_agent


def test_partial_tag_coverage_ranks_between_full_and_none() -> None:
    required = ["code-implementation", "debugging"]
    full = match_score("fix this python code", required, ["coding", "debug"])
    half = match_score("fix this python code", required, ["coding"])
    none = match_score("fix this python code", required, ["writing"])
    assert full > half > none


def test_text_similarity_decides_when_no_tag_applies() -> None:
    gardener = match_score("tomato seedlings care", [], [], "gardener who grows tomato seedlings")
    sailor = match_score("tomato seedlings care", [], [], "sailor on the open sea")
    assert gardener > sailor


@pytest.mark.parametrize("capabilities", [[], ["math"], ["writing", "retrieval", "analysis"]])
def test_match_score_is_in_unit_interval_and_deterministic(capabilities: list[str]) -> None:
    first = match_score("Compute 2+2 and explain", ["math"], capabilities, "persona text")
    assert 0.0 <= first <= 1.0
    assert match_score("Compute 2+2 and explain", ["math"], capabilities, "persona text") == first
