"""The seed's difficulty scores per benchmark, and P20/P80 bins. Pure functions of the items.

Every ratio ``x / P95(x)`` is taken over the benchmark's own items and clipped to 1, so one outlier does not
squash the rest; a total is clipped to [0, 1].

    code   (HumanEval)  0.6 * asserts / P95 + 0.4 * prompt length / P95
    math   (GSM8K)      reasoning steps / P95; steps = non-empty lines of the reference solution before
                        "####" (one per calculation), or the question's sentences when there is no solution
    bbh                 task constant + 0.3 * input length / P95; the constant is 0.6 for tasks that need
                        long exact manipulation (arithmetic, Dyck, sorting, 7-object deduction/tracking),
                        0.2 for single-judgement tasks, 0.4 otherwise (BBH_TASK_CONSTANTS)
    amc                 0.7 * problem length / P95 + 0.3 + 0.12 * math notation (1 when the problem has
                        LaTeX, $...$ or operators/powers/fractions)
    medqa               0.4 q + 0.3 k + 0.2 o + 0.2 clinical, where
                          q        = question length (characters) / P95
                          k        = knowledge density: share of words that are medical terms (>= 10
                                     letters, or a medical affix such as -itis, -emia, -ectomy, hyper-) / P95
                          o        = mean option length (characters) / P95: long options are full statements
                          clinical = 1 for a clinical vignette ("A 45-year-old ...", "presents with", ...)

Lengths are in characters. Bins: score <= P20 is easy, score >= P80 is hard, the rest medium (percentiles by
linear interpolation over the benchmark's scores).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from bench.data.items import BenchItem, DifficultyBin

BBH_TASK_CONSTANTS: dict[str, float] = {
    **dict.fromkeys(
        (
            "multistep_arithmetic_two",
            "dyck_languages",
            "word_sorting",
            "logical_deduction_seven_objects",
            "tracking_shuffled_objects_seven_objects",
            "geometric_shapes",
        ),
        0.6,
    ),
    **dict.fromkeys(
        ("boolean_expressions", "sports_understanding", "navigate", "web_of_lies", "causal_judgement", "snarks"),
        0.2,
    ),
}
DEFAULT_BBH_CONSTANT = 0.4
_MATH_NOTATION = re.compile(r"\$|\\[a-zA-Z]+|\^|\d\s*/\s*\d|[=<>≤≥√π]")
_MEDICAL_AFFIX = re.compile(
    r"(itis|emia|osis|ectomy|otomy|ology|opathy|plasia|oma|algia|uria|cyte|genic|"
    r"^hyper|^hypo|^cardio|^neuro|^hepat|^nephr|^gastr)",
)
_WORD = re.compile(r"[A-Za-z][A-Za-z-]+")
_CLINICAL = re.compile(r"\b\d+[- ](?:year|month|week|day)[- ]old\b|\bpresents? (?:with|to)\b|\bcomes to the\b", re.I)
_SENTENCE_END = re.compile(r"[.?!](?:\s|$)")


def p95(values: Sequence[float]) -> float:
    return float(np.percentile(values, 95)) if len(values) else 0.0


def ratios(values: Sequence[float]) -> list[float]:
    """Each value over the P95 of all of them, clipped to [0, 1] (0 when the P95 is 0)."""
    top = p95(values)
    return [min(value / top, 1.0) if top > 0 else 0.0 for value in values]


def _clip(value: float) -> float:
    return min(max(value, 0.0), 1.0)


def count_asserts(test_code: str) -> int:
    return len(re.findall(r"\bassert\b", test_code))


def reasoning_steps(item: BenchItem) -> int:
    solution = str(item.extra.get("solution", ""))
    if solution:
        body = solution.split("####")[0]
        return max(1, sum(1 for line in body.splitlines() if line.strip()))
    return max(1, len(_SENTENCE_END.findall(item.question)))


def has_math_notation(text: str) -> bool:
    return bool(_MATH_NOTATION.search(text))


def knowledge_density(text: str) -> float:
    words = _WORD.findall(text.lower())
    if not words:
        return 0.0
    terms = sum(1 for word in words if len(word) >= 10 or _MEDICAL_AFFIX.search(word))
    return terms / len(words)


def is_clinical_vignette(text: str) -> bool:
    return bool(_CLINICAL.search(text))


def code_scores(items: Sequence[BenchItem]) -> list[float]:
    asserts = ratios([count_asserts(str(item.extra.get("test", ""))) for item in items])
    lengths = ratios([len(item.question) for item in items])
    return [_clip(0.6 * a + 0.4 * length) for a, length in zip(asserts, lengths, strict=True)]


def math_scores(items: Sequence[BenchItem]) -> list[float]:
    return ratios([reasoning_steps(item) for item in items])


def bbh_scores(items: Sequence[BenchItem]) -> list[float]:
    lengths = ratios([len(item.question) for item in items])
    constants = [BBH_TASK_CONSTANTS.get(str(item.extra.get("task", "")), DEFAULT_BBH_CONSTANT) for item in items]
    return [_clip(constant + 0.3 * length) for constant, length in zip(constants, lengths, strict=True)]


def amc_scores(items: Sequence[BenchItem]) -> list[float]:
    lengths = ratios([len(item.question) for item in items])
    notation = [1.0 if has_math_notation(item.question) else 0.0 for item in items]
    return [_clip(0.7 * length + 0.3 + 0.12 * mark) for length, mark in zip(lengths, notation, strict=True)]


def medqa_scores(items: Sequence[BenchItem]) -> list[float]:
    q = ratios([len(item.question) for item in items])
    k = ratios([knowledge_density(item.question) for item in items])
    o = ratios([_mean_option_length(item) for item in items])
    clinical = [1.0 if is_clinical_vignette(item.question) else 0.0 for item in items]
    return [_clip(0.4 * a + 0.3 * b + 0.2 * c + 0.2 * d) for a, b, c, d in zip(q, k, o, clinical, strict=True)]


def _mean_option_length(item: BenchItem) -> float:
    options = item.extra.get("options", {})
    return sum(len(text) for text in options.values()) / len(options) if options else 0.0


SCORERS: dict[str, Callable[[Sequence[BenchItem]], list[float]]] = {
    "humaneval": code_scores,
    "gsm8k": math_scores,
    "bbh": bbh_scores,
    "amc": amc_scores,
    "medqa": medqa_scores,
}


def bin_scores(scores: Sequence[float]) -> list[DifficultyBin]:
    """easy at or below P20, hard at or above P80, medium between."""
    if not scores:
        return []
    low, high = (float(value) for value in np.percentile(scores, [20, 80]))
    return ["easy" if score <= low else "hard" if score >= high else "medium" for score in scores]


def with_difficulty(items: Sequence[BenchItem]) -> list[BenchItem]:
    """The items with score and bin, each benchmark scored and binned over its own items (order kept)."""
    scored: dict[int, BenchItem] = {}
    for benchmark in dict.fromkeys(item.benchmark for item in items):
        indices = [index for index, item in enumerate(items) if item.benchmark == benchmark]
        group = [items[index] for index in indices]
        scores = SCORERS[benchmark](group)
        for index, item, score, label in zip(indices, group, scores, bin_scores(scores), strict=True):
            scored[index] = item.with_difficulty(round(score, 6), label)
    return [scored[index] for index in range(len(items))]
