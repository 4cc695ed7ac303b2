"""The seed's difficulty scores and the P20/P80 bins."""

from __future__ import annotations

import pytest

from bench.data.difficulty import (
    amc_scores,
    bbh_scores,
    bin_scores,
    code_scores,
    is_clinical_vignette,
    knowledge_density,
    math_scores,
    medqa_scores,
    ratios,
    reasoning_steps,
    with_difficulty,
)
from bench.data.items import BenchItem, Benchmark


def item(benchmark: Benchmark, question: str = "q", **extra: object) -> BenchItem:
    return BenchItem(item_id=f"{benchmark}-{question[:10]}-{len(extra)}", benchmark=benchmark, question=question,
                     gold="1", extra=dict(extra))  # fmt: skip


def test_ratios_divide_by_the_p95_and_clip_at_one() -> None:
    values = [float(v) for v in range(1, 101)]
    result = ratios(values)
    assert result[-1] == 1.0  # above the P95 (95.05): clipped
    assert result[0] == pytest.approx(1 / 95.05)
    assert ratios([0.0, 0.0]) == [0.0, 0.0]


def test_code_score_weighs_asserts_and_prompt_length() -> None:
    items = [
        item("humaneval", "x" * 10, test="assert a\n"),
        item("humaneval", "x" * 100, test="assert a\n" * 10),
    ]
    low, high = code_scores(items)
    assert high == pytest.approx(1.0)
    assert low < 0.2
    # six tenths come from asserts: equal prompts, more asserts -> +0.6 at most
    same_prompt = [item("humaneval", "p", test=""), item("humaneval", "p", test="assert x")]
    assert code_scores(same_prompt)[1] - code_scores(same_prompt)[0] == pytest.approx(0.6)


def test_math_score_counts_solution_lines_before_the_answer_marker() -> None:
    solved = item("gsm8k", "Q?", solution="a = 1\nb = 2\n\nc = 3\n#### 3")
    assert reasoning_steps(solved) == 3
    assert reasoning_steps(item("gsm8k", "One. Two? Three!")) == 3
    assert math_scores([solved, item("gsm8k", "x", solution="a\n#### 1")])[1] < 1.0


def test_bbh_score_is_task_constant_plus_length() -> None:
    hard_task = item("bbh", "x" * 50, task="multistep_arithmetic_two")
    easy_task = item("bbh", "x" * 50, task="boolean_expressions")
    other_task = item("bbh", "x" * 50, task="date_understanding")
    scores = bbh_scores([hard_task, easy_task, other_task])
    assert scores == pytest.approx([0.9, 0.5, 0.7])


def test_amc_score_adds_a_constant_and_notation() -> None:
    plain, notation = amc_scores([item("amc", "How many apples"), item("amc", "Find $x^2$ if x")])
    assert plain == pytest.approx(0.7 * (15 / 15.0) * 1.0 + 0.3, abs=0.1)
    assert notation == 1.0  # 0.7 + 0.3 + 0.12 clipped


def test_medqa_parts() -> None:
    vignette = "A 45-year-old woman presents with fatigue and hepatosplenomegaly."
    assert is_clinical_vignette(vignette)
    assert not is_clinical_vignette("Which enzyme is deficient in Gaucher disease?")
    assert knowledge_density("the the the") == 0.0
    assert knowledge_density("hepatitis nephropathy") == 1.0
    short = item("medqa", "What is it?", options={"A": "x", "B": "y"})
    long = item("medqa", vignette, options={"A": "a long option text", "B": "another long option"})
    low, high = medqa_scores([short, long])
    assert high == pytest.approx(1.0)  # 0.4 + 0.3 + 0.2 + 0.2 = 1.1, clipped
    assert low == pytest.approx(0.4 * (11 / len(vignette)) + 0.2 * (1 / 18.5), abs=0.05)


def test_bins_use_p20_and_p80() -> None:
    labels = bin_scores([float(v) for v in range(10)])
    assert labels == ["easy", "easy", "medium", "medium", "medium", "medium", "medium", "medium", "hard", "hard"]
    assert bin_scores([]) == []
    assert set(bin_scores([0.5, 0.5, 0.5])) == {"easy"}  # all equal: at or below P20


def test_with_difficulty_scores_each_benchmark_on_its_own_items_and_keeps_order() -> None:
    items = [
        item("gsm8k", "a", solution="1\n#### 1"),
        item("bbh", "xx", task="navigate"),
        item("gsm8k", "b", solution="1\n2\n3\n#### 1"),
    ]
    scored = with_difficulty(items)
    assert [i.item_id for i in scored] == [i.item_id for i in items]
    assert scored[2].difficulty_score == pytest.approx(1.0)
    assert scored[0].difficulty == "easy" and scored[2].difficulty == "hard"
    assert scored[1].difficulty is not None
