"""Loaders of the cached formats, and the generated BBH items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.data.bbh_generator import evaluate, generate_bbh
from bench.data.loaders import load_bbh, load_gsm8k, load_medqa, parse_options


@pytest.mark.parametrize(
    ("expression", "value"),
    [  # lm-eval 0.4.13's own BBH few-shot examples
        ("((-5 + 9 * -4 - 0) * (4 + -7 + 0 * -5))", 123),
        ("((-9 * 7 * 7 * -9) + (4 * -9 - 8 - -4))", 3929),
        ("((-3 + 5 * 8 * -4) - (9 - 8 * -7 + -9))", -219),
        ("not ( ( not not True ) )", False),
        ("True and False and not True and True", False),
        ("not not ( not ( False ) )", True),
    ],
)
def test_evaluate_matches_bbh_gold(expression: str, value: bool | int) -> None:
    assert evaluate(expression) == value


def test_evaluate_refuses_anything_else() -> None:
    with pytest.raises(ValueError):
        evaluate("__import__('os')")


def test_generated_bbh_is_deterministic_and_correct() -> None:
    items = generate_bbh(20, seed=5)
    assert [i.item_id for i in items] == [i.item_id for i in generate_bbh(20, seed=5)]
    assert [i.question for i in items] != [i.question for i in generate_bbh(20, seed=6)]
    assert {i.extra["task"] for i in items} == {"boolean_expressions", "multistep_arithmetic_two"}
    for item in items:
        expression = item.question.removesuffix(" is").removesuffix(" =")
        assert str(evaluate(expression)) == item.gold
        assert item.gold in ("True", "False") or item.gold.lstrip("-").isdigit()


def test_parse_options_ignores_stray_lines() -> None:
    assert parse_options('A. One\nB. Two words\nC. x\nD. y\nE. z\n"') == {
        "A": "One", "B": "Two words", "C": "x", "D": "y", "E": "z",
    }  # fmt: skip


def test_loaders_read_the_upstream_formats(tmp_path: Path) -> None:
    gsm8k = tmp_path / "cases.jsonl"
    gsm8k.write_text(json.dumps({"id": "g1", "prompt": "Q?", "expected": "7", "upstream_answer": "a\n#### 7"}) + "\n\n")
    assert [(i.item_id, i.gold, i.extra["solution"]) for i in load_gsm8k(gsm8k)] == [("g1", "7", "a\n#### 7")]
    medqa = tmp_path / "test.jsonl"
    row = {"question": "Which?", "answer": "B. Two", "options": "A. One\nB. Two\nC. 3\nD. 4\nE. 5"}
    medqa.write_text(json.dumps(row) + "\n")
    [item] = load_medqa(medqa)
    assert item.gold == "B" and len(item.extra["options"]) == 5 and item.item_id == "medqa-test-0000"
    bbh = tmp_path / "bbh"
    bbh.mkdir()
    (bbh / "navigate.yaml").write_text(
        "dataset_name: navigate\nfewshot_config:\n  samples:\n  - input: go\n    target: 'No'\n"
    )
    (bbh / "_fewshot_template_yaml").write_text("x: 1\n")
    assert [(i.item_id, i.gold) for i in load_bbh(bbh)] == [("bbh-navigate-fewshot-0", "No")]
