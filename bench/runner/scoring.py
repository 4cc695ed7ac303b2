"""Per-benchmark correctness of the fabric's answer.

gsm8k, amc  numeric equality of the voted answer (else the last number of the winning text) with gold
medqa       the option letter: the voted answer as a letter, or the option whose text it repeats
bbh         canonical equality ("(D)" == "D", "True" == "true", "1,000" == "1000")
humaneval   the winning text's code passes the problem's tests in a subprocess (see execution.py)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from bench.data.items import BenchItem
from bench.runner.execution import check_humaneval
from router.answers import canonical_number, canonicalize, extract_answer

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_LETTER = re.compile(r"^\(?([A-J])\)?(?:[.:)]|\s|$)")


@dataclass(frozen=True)
class Score:
    correct: bool
    predicted: str
    detail: str = ""


def number_text(text: str) -> str | None:
    """The canonical number `text` spells ("1,000.50" -> "1000.5"), else the last number in it, else None."""
    canonical = canonical_number(text.strip())
    if canonical is None:
        found = _NUMBER.findall(text)
        canonical = canonical_number(found[-1]) if found else None
    return canonical


def _same_number(left: str | None, right: str | None) -> bool:
    if left is None or right is None:
        return False
    try:
        return Decimal(left) == Decimal(right)
    except InvalidOperation:
        return False


def score_number(answer: str, final_text: str, gold: str) -> Score:
    predicted = number_text(answer)
    if predicted is None and final_text:
        predicted = number_text(extract_answer(final_text).raw)
    return Score(_same_number(predicted, number_text(gold)), predicted or "")


def option_letter(answer: str, options: dict[str, str]) -> str:
    """The option `answer` names: a leading letter ("C", "(C)", "C. text"), or the option text it repeats."""
    text = answer.strip().strip("*`\"'").strip()
    match = _LETTER.match(text)
    if match and match.group(1) in options:
        return match.group(1)
    lowered = canonicalize(text)
    for letter, option in options.items():
        if lowered and lowered == canonicalize(option):
            return letter
    return ""


def score_medqa(answer: str, final_text: str, item: BenchItem) -> Score:
    options = item.extra["options"]
    letter = option_letter(answer, options) or option_letter(extract_answer(final_text).raw, options)
    return Score(letter == item.gold, letter)


def score_bbh(answer: str, gold: str) -> Score:
    predicted = canonicalize(answer.strip().strip("()")) if answer.strip() else ""
    expected = canonicalize(gold.strip().strip("()"))
    return Score(predicted == expected, predicted)


def score_humaneval(final_text: str, item: BenchItem, timeout_s: float = 10.0) -> Score:
    result = check_humaneval(final_text, item.question, item.extra["test"], item.extra["entry_point"], timeout_s)
    return Score(result.passed, result.status, result.detail[-300:])


def score(item: BenchItem, answer: str, final_text: str, timeout_s: float = 10.0) -> Score:
    """Whether the fabric's voted `answer` (and the winning run's `final_text`) is correct for `item`."""
    if item.benchmark in ("gsm8k", "amc"):
        return score_number(answer, final_text, item.gold)
    if item.benchmark == "medqa":
        return score_medqa(answer, final_text, item)
    if item.benchmark == "humaneval":
        return score_humaneval(final_text or answer, item, timeout_s)
    return score_bbh(answer, item.gold)
