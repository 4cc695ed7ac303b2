"""Answer extraction and canonicalisation, so that runs which agree on an answer vote together.

`extract_answer` tries, in order, and reports which one matched in `method`:

    json          a JSON object with "final_answer" (and optional "confidence"), fenced or inside prose
    boxed         the last \\boxed{...} (nested braces allowed)
    answer-line   the last "Final answer: ..." / "Answer: ..." / "the answer is ..." (any case)
    bracket       the last bracketed option letter, "[B]" or "(B)"
    verdict       valid / invalid          } as the first or last word
    boolean       true / false             } of the text, so prose like
    yes-no        yes / no                 } "no doubt it is 5" is not a "no"
    letter        a lone option letter A-E (a whole line), or "option B"
    number        the last number
    text          otherwise, the last non-empty line
    none          the text is empty

`canonicalize` then strips, lower-cases, collapses spaces and drops a trailing period; numbers lose
thousands separators, currency signs and needless zeros ("1,000" -> "1000", "42.0" -> "42", "$5" -> "5");
option letters become upper case; yes/no/true/false/valid/invalid become lower case.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_ANSWER_LINE = re.compile(
    r"(?:\bfinal\s+answer|\banswer)\s*(?:\*\*)?\s*(?::|is\b)\s*(?:\*\*)?\s*([^\n]+)", re.IGNORECASE
)
_BRACKETED_LETTER = re.compile(r"[\[(]([A-E])[\])]")
_WHOLE_BRACKETED_LETTER = re.compile(r"^[\[(]?([A-Ea-e])[\])]?$")
_OPTION_WORD = re.compile(r"\b(?:option|choice)\s+\(?([A-E])\b\)?", re.IGNORECASE)
_LONE_LETTER_LINE = re.compile(r"^\s*\(?([A-E])\)?\s*[.:]?\s*$", re.MULTILINE)
_NUMBER_IN_TEXT = re.compile(r"-?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_NUMBER_ONLY = re.compile(r"^([-+]?)\$?\s*((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)\s*%?$")
_WORD_CLASSES: tuple[tuple[str, frozenset[str]], ...] = (
    ("verdict", frozenset({"valid", "invalid"})),
    ("boolean", frozenset({"true", "false"})),
    ("yes-no", frozenset({"yes", "no"})),
)
_WRAPPERS = "*`\"'"


@dataclass(frozen=True)
class ExtractedAnswer:
    """An answer found in a model's text: as written, canonical, how it was found, stated confidence."""

    raw: str
    canonical: str
    method: str
    confidence: float | None = None


def extract_answer(text: str) -> ExtractedAnswer:
    """Find the final answer in a model's output (see the module docstring for the order of attempts)."""
    stripped = text.strip()
    if not stripped:
        return ExtractedAnswer(raw="", canonical="", method="none")
    found = _json_answer(stripped)
    if found is not None:
        return found
    for method, finder in _FINDERS:
        raw = finder(stripped)
        if raw is not None:
            return ExtractedAnswer(raw=raw, canonical=canonicalize(raw), method=method)
    last_line = [line for line in stripped.splitlines() if line.strip()][-1].strip()
    return ExtractedAnswer(raw=last_line, canonical=canonicalize(last_line), method="text")


def canonicalize(raw: str) -> str:
    """Normalise an answer string so equal answers compare equal (see the module docstring)."""
    text = " ".join(raw.split()).strip(_WRAPPERS).strip()
    text = text.rstrip(".").strip(_WRAPPERS).strip()
    letter = _WHOLE_BRACKETED_LETTER.match(text)
    if letter:
        return letter.group(1).upper()
    number = canonical_number(text)
    if number is not None:
        return number
    return text.lower()


def canonical_number(text: str) -> str | None:
    """Return the canonical spelling of a number ("1,000.50" -> "1000.5"), or None if `text` is not one."""
    match = _NUMBER_ONLY.match(text.strip())
    if match is None:
        return None
    try:
        value = Decimal(match.group(1) + match.group(2).replace(",", ""))
    except InvalidOperation:
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _json_answer(text: str) -> ExtractedAnswer | None:
    """The last JSON object with "final_answer", looking inside code fences first, then in the prose."""
    for block in [*reversed(_FENCE.findall(text)), text]:
        found = _last_json_object_with_answer(block)
        if found is not None:
            value, confidence = found
            raw = value if isinstance(value, str) else json.dumps(value)
            return ExtractedAnswer(raw=raw, canonical=canonicalize(raw), method="json", confidence=confidence)
    return None


def _last_json_object_with_answer(text: str) -> tuple[object, float | None] | None:
    """Decode every JSON object starting at a "{" and keep the last one that holds "final_answer"."""
    decoder = json.JSONDecoder()
    best: tuple[object, float | None] | None = None
    position = text.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(text, position)
        except ValueError:
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict) and "final_answer" in value:
            best = (value["final_answer"], _confidence(value.get("confidence")))
        position = text.find("{", end)
    return best


def _confidence(value: object) -> float | None:
    """A stated confidence as a probability; percentages above 1 are divided by 100."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(str(value).strip().rstrip("%"))
    except ValueError:
        return None
    if number > 1.0:
        number /= 100.0
    return min(max(number, 0.0), 1.0)


def _boxed(text: str) -> str | None:
    """Contents of the last \\boxed{...}, honouring nested braces."""
    start = text.rfind("\\boxed{")
    while start != -1:
        opening = start + len("\\boxed")
        closing = _matching_brace(text, opening)
        if closing != -1:
            return text[opening + 1 : closing].strip()
        start = text.rfind("\\boxed{", 0, start)
    return None


def _matching_brace(text: str, opening: int) -> int:
    """Index of the brace closing the one at `opening`, or -1 when it is never closed."""
    depth = 0
    for position in range(opening, len(text)):
        depth += {"{": 1, "}": -1}.get(text[position], 0)
        if depth == 0:
            return position
    return -1


def _answer_line(text: str) -> str | None:
    """The content after the last "Final answer:" / "Answer:" / "the answer is"."""
    matches = [m.group(1).strip() for m in _ANSWER_LINE.finditer(text) if m.group(1).strip(" *.")]
    return matches[-1] if matches else None


def _bracketed_letter(text: str) -> str | None:
    """The last "[B]" or "(B)"."""
    matches = [match.group(0) for match in _BRACKETED_LETTER.finditer(text)]
    return matches[-1] if matches else None


def _edge_word(words: frozenset[str]) -> Callable[[str], str | None]:
    """A finder for a word from `words` standing as the last or the first word of the text."""

    def find(text: str) -> str | None:
        tokens = re.findall(r"[A-Za-z]+", text)
        for token in (tokens[-1:] + tokens[:1]) if tokens else []:
            if token.lower() in words:
                return token
        return None

    return find


def _lone_letter(text: str) -> str | None:
    """The last line that is only an option letter, else the last "option B" / "choice B"."""
    lines = _LONE_LETTER_LINE.findall(text)
    if lines:
        return str(lines[-1])
    words = _OPTION_WORD.findall(text)
    return str(words[-1]) if words else None


def _last_number(text: str) -> str | None:
    """The last number in the text."""
    matches = _NUMBER_IN_TEXT.findall(text)
    return matches[-1] if matches else None


_FINDERS: tuple[tuple[str, Callable[[str], str | None]], ...] = (
    ("boxed", _boxed),
    ("answer-line", _answer_line),
    ("bracket", _bracketed_letter),
    *((method, _edge_word(words)) for method, words in _WORD_CLASSES),
    ("letter", _lone_letter),
    ("number", _last_number),
)
