"""Per-benchmark scoring, and HumanEval candidates run in a subprocess."""

from __future__ import annotations

import os

import pytest

from bench.data.items import BenchItem
from bench.runner.execution import build_program, check_humaneval, extract_code, run_program
from bench.runner.scoring import option_letter, score, score_bbh, score_number

OPTIONS = {"A": "Nifedipine", "B": "Enoxaparin", "C": "Clopidogrel", "D": "Spironolactone", "E": "Propranolol"}
PROMPT = 'from typing import List\n\n\ndef add(a: int, b: int) -> int:\n    """Add two numbers."""\n'
TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
HUMANEVAL = BenchItem("HumanEval/x", "humaneval", PROMPT, "check(add) passes", {"test": TEST, "entry_point": "add"})


@pytest.mark.parametrize(
    ("answer", "final_text", "gold", "correct"),
    [
        ("18", "", "18", True),
        ("$1,000", "", "1000", True),
        ("42.0", "", "42", True),
        ("18 vacuum cleaners", "", "18", True),
        ("about 17", "", "18", False),
        ("", "So she had 18.\nFinal answer: 18", "18", True),
        ("no idea", "", "18", False),
        ("-5", "", "5", False),
    ],
)
def test_gsm8k_numbers(answer: str, final_text: str, gold: str, correct: bool) -> None:
    assert score_number(answer, final_text, gold).correct is correct


@pytest.mark.parametrize(
    ("answer", "letter"),
    [("C", "C"), ("(C)", "C"), ("C. Clopidogrel", "C"), ("clopidogrel", "C"), ("F", ""), ("Heparin", ""), ("", "")],
)
def test_medqa_option_letter(answer: str, letter: str) -> None:
    assert option_letter(answer, OPTIONS) == letter


def test_medqa_falls_back_to_the_winning_text() -> None:
    item = BenchItem("m", "medqa", "q", "C", {"options": OPTIONS})
    assert score(item, "I am not sure", "Thinking...\nFinal answer: (C)").correct
    assert not score(item, "B", "").correct


@pytest.mark.parametrize(
    ("answer", "gold", "correct"),
    [("(D)", "(D)", True), ("D", "(D)", True), ("True", "True", True), ("false", "True", False), ("-219", "-219", True),
     ("apple banana", "apple banana", True), ("", "(A)", False)],
)  # fmt: skip
def test_bbh_exact_match(answer: str, gold: str, correct: bool) -> None:
    assert score_bbh(answer, gold).correct is correct


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            "Here:\n```python\ndef add(a, b):\n    return a + b\n```\nFinal answer: done",
            "def add(a, b):\n    return a + b",
        ),
        ("```\n    return a + b\n```", "    return a + b"),
        ("```text\nnothing\n```\n```py\nx = 1\n```", "x = 1"),
        ("def add(a, b):\n    return a + b", "def add(a, b):\n    return a + b"),
        ("I cannot do that.", ""),
        ("```python\ndef add(a, b):\n    return a + b", "def add(a, b):\n    return a + b"),  # unclosed fence
    ],
)
def test_extract_code(reply: str, expected: str) -> None:
    assert extract_code(reply, "add") == expected


def test_build_program_keeps_the_prompt_imports_for_a_whole_function() -> None:
    program = build_program(PROMPT, "def add(a, b):\n    return a + b", TEST, "add")
    assert "from typing import List" in program and program.rstrip().endswith("check(add)")
    completion = build_program(PROMPT, "    return a + b\n", TEST, "add")
    assert PROMPT + "    return a + b" in completion


def test_humaneval_passing_candidate() -> None:
    result = check_humaneval("```python\ndef add(a, b):\n    return a + b\n```", PROMPT, TEST, "add")
    assert result.status == "passed"
    assert score(HUMANEVAL, "", "```python\ndef add(a, b):\n    return a + b\n```").correct


def test_humaneval_failing_candidate() -> None:
    result = check_humaneval("```python\ndef add(a, b):\n    return a - b\n```", PROMPT, TEST, "add")
    assert result.status == "failed"
    assert "AssertionError" in result.detail


def test_humaneval_timing_out_candidate_is_killed() -> None:
    result = check_humaneval("```python\ndef add(a, b):\n    while True:\n        pass\n```", PROMPT, TEST, "add", 1.0)
    assert result.status == "timeout"
    assert result.seconds < 5


def test_humaneval_candidate_runs_in_another_process() -> None:
    marker = f"os.getpid() != {os.getpid()}"
    assert run_program(f"import os\nassert {marker}\n").passed
    assert not run_program("raise SystemExit(3)\n").passed


def test_humaneval_reply_without_code() -> None:
    assert check_humaneval("I do not know.", PROMPT, TEST, "add").status == "no_code"
