"""Planning: the planner prompt, parsing and repairing planner output, and when to skip planning.

Small models rarely return clean JSON, so `parse_plan` tries, in order: the JSON inside code fences or
the outermost {...} / [...] in the text; the same after repairs (trailing commas removed, Python-style
single quotes read as a Python literal); the complete items of a plan cut off by the token limit; and as a
last resort a numbered or bulleted list. The steps are
stripped (and their own numbering, `1. ` or `Step 2:`, removed), empty ones dropped, consecutive duplicates merged
and the list cut to `max_steps`.

Errors: PlanParseError (a ValueError) when no step can be recovered.
"""

from __future__ import annotations

import ast
import json
import re

from shared.errors import SymphonyError

MAX_STEPS = 8
PLANNING_TAGS = ("planning",)
"""The tags planner runs are screened, rewarded and counted under."""
_STEP_KEYS = ("subtasks", "steps", "plan", "tasks")
_ITEM_KEYS = ("subtask", "task", "step", "description", "text", "title")
_FENCE = re.compile(r"```[A-Za-z]*\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_ITEM_FIELD = re.compile(r'"(?:subtask|task|step|description|text|title)"\s*:\s*"((?:[^"\\]|\\.)*)"')
_BARE_ITEM = re.compile(r'(?:^|[\[,])\s*"((?:[^"\\]|\\.)*)"\s*(?=[,\]])')
_LIST_LINE = re.compile(r"^\s*(?:\d+\s*[.):]|[-*\u2022]|step\s*\d+\s*[.):-]?)\s+(.+?)\s*$", re.IGNORECASE)
_ENUMERATION = re.compile(r"^(?:\d{1,2}\s*[.):]|step\s*\d{1,2}\s*[.):-]?)\s+", re.IGNORECASE)
_MULTI_STEP_WORDS = re.compile(
    r"\b(?:then|after that|afterwards|first|second|finally|step|steps|and also|as well as|compare|"
    r"plan|list|each|explain|describe|write|design|implement)\b",
    re.IGNORECASE,
)
SIMPLE_QUERY_MAX_WORDS = 25

SYSTEM_PROMPT = (
    "You are a planner. Break the user's task into at most {max_steps} short, self-contained subtasks that "
    "other agents can solve one by one, in order. Reply with strict JSON only, no prose and no code fences, "
    'exactly in this shape: {{"subtasks": ["first subtask", "second subtask"]}}. '
    "Do not solve them. The last subtask must produce the final answer to the whole task, in the format the task "
    "asks for. If the task is simple, return a single subtask."
)


class PlanParseError(SymphonyError, ValueError):
    """Raised when a planner's output holds no usable step."""


def plan_prompt(query: str, max_steps: int = MAX_STEPS) -> list[dict[str, str]]:
    """Chat messages asking a planner to decompose `query` into 1..max_steps subtasks as strict JSON."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT.format(max_steps=max_steps)},
        {"role": "user", "content": f"Task: {query.strip()}\nReturn the JSON now."},
    ]


def parse_plan(text: str, max_steps: int = MAX_STEPS) -> list[str]:
    """Recover the ordered subtasks from a planner's reply (see the module docstring); raise PlanParseError."""
    for candidate in _json_candidates(text):
        steps = _clean(_steps_from(_decode(candidate)), max_steps)
        if steps:
            return steps
    for fallback in (_truncated_steps, _list_lines):
        steps = _clean(fallback(text), max_steps)
        if steps:
            return steps
    raise PlanParseError(f"no subtasks found in planner output: {text[:80]!r}")


def fallback_plan(query: str) -> list[str]:
    """The plan used when planning is skipped or fails: the query itself as the only step."""
    return [query]


def is_simple_query(query: str) -> bool:
    """True for a short single question or instruction that gains nothing from planning."""
    words = query.split()
    if not words or len(words) > SIMPLE_QUERY_MAX_WORDS:
        return False
    if query.count("?") > 1 or "\n" in query.strip() or ";" in query:
        return False
    sentences = [part for part in re.split(r"[.!?]+(?:\s|$)", query.strip()) if part.strip()]
    return len(sentences) <= 1 and not _MULTI_STEP_WORDS.search(query)


def _json_candidates(text: str) -> list[str]:
    """Texts that may hold the plan's JSON: fenced blocks, then the outermost object and list."""
    candidates = [block.strip() for block in _FENCE.findall(text)]
    for opening, closing in (("{", "}"), ("[", "]")):
        start, end = text.find(opening), text.rfind(closing)
        if start != -1 and end > start:
            candidates.append(text[start : end + 1])
    return candidates


def _decode(candidate: str) -> object:
    """Decode strict JSON, then JSON without trailing commas, then a Python literal (single quotes)."""
    repaired = _TRAILING_COMMA.sub(r"\1", candidate)
    for attempt in (candidate, repaired):
        try:
            return json.loads(attempt)
        except ValueError:
            pass  # try the next, more lenient reading
    try:
        return ast.literal_eval(repaired)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def _steps_from(value: object) -> list[str]:
    """Pull the list of step texts out of a decoded object or list."""
    if isinstance(value, dict):
        for key in _STEP_KEYS:
            if isinstance(value.get(key), list):
                return _steps_from(value[key])
        return []
    if not isinstance(value, list):
        return []
    return [text for text in (_item_text(item) for item in value) if text]


def _item_text(item: object) -> str:
    """A step's text, whether the step is a string, a number or an object with a text field."""
    if isinstance(item, str):
        return item
    if isinstance(item, (int, float)) and not isinstance(item, bool):
        return str(item)
    if isinstance(item, dict):
        for key in _ITEM_KEYS:
            if isinstance(item.get(key), str):
                return str(item[key])
    return ""


def _truncated_steps(text: str) -> list[str]:
    """The complete items of a plan whose JSON was cut off (small models often hit the token limit)."""
    start = text.find("[", max(text.find('"subtasks"'), 0))
    if start == -1:
        return []
    body = text[start + 1 :]
    fields = _ITEM_FIELD.findall(body)
    strings = fields or [match.group(1) for match in _BARE_ITEM.finditer(body)]
    return [_unescape(value) for value in strings]


def _unescape(value: str) -> str:
    try:
        return str(json.loads(f'"{value}"'))
    except ValueError:
        return value


def _list_lines(text: str) -> list[str]:
    """Items of a numbered or bulleted list, the last-resort reading of free text."""
    return [match.group(1) for line in text.splitlines() if (match := _LIST_LINE.match(line))]


def _clean(steps: list[str], max_steps: int) -> list[str]:
    """Strip steps and their numbering, drop empty ones, merge consecutive duplicates, keep at most max_steps."""
    cleaned: list[str] = []
    for step in steps:
        text = _ENUMERATION.sub("", " ".join(step.split())).strip(" \"'`*")
        if text and (not cleaned or cleaned[-1].lower() != text.lower()):
            cleaned.append(text)
    return cleaned[:max_steps]
