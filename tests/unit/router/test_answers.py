"""Answer extraction and canonicalisation, table-driven."""

from __future__ import annotations

import pytest

from router.answers import canonicalize, extract_answer

EXTRACTION_CASES = [
    # (text, canonical, method, confidence)
    ("", "", "none", None),
    ("   \n  ", "", "none", None),
    ('{"final_answer": "42", "confidence": 0.9}', "42", "json", 0.9),
    ('Reasoning...\n```json\n{"final_answer": "1,000", "confidence": 80}\n```', "1000", "json", 0.8),
    ('I think {"final_answer": 7} is right. {"note": 1}', "7", "json", None),
    ('{"final_answer": "a"} then {"final_answer": "B"}', "B", "json", None),
    ('{"final_answer": true}', "true", "json", None),
    ('{"final_answer": 42.0}', "42", "json", None),
    ("So the result is \\boxed{17}.", "17", "boxed", None),
    ("\\boxed{1} no wait \\boxed{\\frac{1}{2}}", "\\frac{1}{2}", "boxed", None),
    ("Final answer: Paris.", "paris", "answer-line", None),
    ("answer: 3\nFINAL ANSWER:  New   York ", "new york", "answer-line", None),
    ("Thinking hard. The answer is 1,234.", "1234", "answer-line", None),
    ("Answer: (b)", "B", "answer-line", None),
    ("**Final Answer:** -3.50", "-3.5", "answer-line", None),
    ("I would pick [C] because of the data.", "C", "bracket", None),
    ("Option (D) fits best", "D", "bracket", None),
    ("The argument is valid", "valid", "verdict", None),
    ("Invalid, since the premise fails.", "invalid", "verdict", None),
    ("TRUE", "true", "boolean", None),
    ("False.", "false", "boolean", None),
    ("Yes, because 2 is even.", "yes", "yes-no", None),
    ("After checking every case: no", "no", "yes-no", None),
    ("B", "B", "letter", None),
    ("Looking at the options\nc", "C", "text", None),
    ("Looking at the options\nE.", "E", "letter", None),
    ("I am going with option d here", "D", "letter", None),
    ("There is no doubt the total is 56 apples", "56", "number", None),
    ("It costs $5", "5", "number", None),
    ("We get 12 then 13, finally 1,000.00", "1000", "number", None),
    ("Temperature drops to -4.", "-4", "number", None),
    ("I cannot tell.", "i cannot tell", "text", None),
]


@pytest.mark.parametrize(("text", "canonical", "method", "confidence"), EXTRACTION_CASES)
def test_extract_answer(text: str, canonical: str, method: str, confidence: float | None) -> None:
    found = extract_answer(text)
    assert (found.canonical, found.method) == (canonical, method)
    if confidence is None:
        assert found.confidence is None
    else:
        assert found.confidence == pytest.approx(confidence)


CANONICAL_CASES = [
    ("  Hello   World. ", "hello world"),
    ("1,000", "1000"),
    ("42.0", "42"),
    ("-3.50", "-3.5"),
    ("$5", "5"),
    ("0.50", "0.5"),
    ("+7", "7"),
    ("-0", "0"),
    ("b", "B"),
    ("(a)", "A"),
    ("[E]", "E"),
    ("Yes", "yes"),
    ("FALSE.", "false"),
    ("**Paris**", "paris"),
    ("`x + 1`", "x + 1"),
    ("12 apples", "12 apples"),
]


@pytest.mark.parametrize(("raw", "expected"), CANONICAL_CASES)
def test_canonicalize(raw: str, expected: str) -> None:
    assert canonicalize(raw) == expected


def test_raw_keeps_the_answer_as_written() -> None:
    found = extract_answer("Final answer: $1,000.")
    assert found.raw.startswith("$1,000")
    assert found.canonical == "1000"
