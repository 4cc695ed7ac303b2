"""Constrained runs, as the router plans them: plans by construction, answers of a type, who can honour what.

* Planner runs on an agent that announces `json_schema` are decoded under `plan_constraint` (1..max_steps
  non-empty strings) with `PLANNER_PROMPT`, a prompt that shows no example plan: a small model constrained to a
  schema copies an example it is shown (`["first subtask", "second subtask"]`) instead of planning. Agents that
  cannot constrain keep the old prompt and `parse_plan`'s repairs.
* The last step of a task with `options.output` is decoded under it whole; with `options.answer` every run of
  the last step reasons freely and then answers under it (the agent's two phases, `RunResult.answer`).
* `constrained_answer` reads such a run's answer: the canonical form of the constraint (canonical JSON for a JSON
  answer or a tool call, the number's canonical spelling, the exact choice), so ballots compare values, not prose.

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from router.answers import ExtractedAnswer, canonicalize, extract_answer
from shared.constraints import canonical_answer
from shared.messages import OutputConstraint, RunRequest, RunResult, TaskOptions

PLANNER_PROMPT = (
    "You are a planner. Split the user's task into at most {max_steps} short subtasks that other agents solve "
    "one after the other. Each subtask names one concrete action on the task's own subject, in your own words. "
    "Do not solve them. The last subtask produces the final answer to the whole task. A simple task is one subtask."
)


STOPWORD_TEXT = (
    "the a an and or of to in on for with then than that this is are be by as at from it its their them into "
    "what which how why when who whose each every all any some two three four five first second third finally "
    "after before also give list write make find explain describe compare"
)
STOPWORDS = frozenset(STOPWORD_TEXT.split())
_CAMEL_CASE = re.compile(r"([a-z0-9])([A-Z])")
MAX_STEP_CHARS = 60  # a step is a short instruction; a small model left unbounded may never close its string
STEP_PATTERN = f"^[ !#-\\[\\]-~]{{1,{MAX_STEP_CHARS}}}$"
"""A step: 1..MAX_STEP_CHARS printable ASCII characters but `"` and backslash. No escape sequence (`\\u0041` is six
characters of output for one of text) and no multi-byte character, so every character of a plan is one byte, at
most one token: the longest plan the schema admits has a known length, and the plan's token budget covers it."""


def plan_constraint(max_steps: int) -> OutputConstraint:
    """The plan schema: {"subtasks": [1..max_steps steps of STEP_PATTERN]}."""
    step = {"type": "string", "minLength": 1, "maxLength": MAX_STEP_CHARS, "pattern": STEP_PATTERN}
    subtasks = {"type": "array", "items": step, "minItems": 1, "maxItems": max_steps}
    schema = {
        "type": "object",
        "properties": {"subtasks": subtasks},
        "required": ["subtasks"],
        "additionalProperties": False,
    }
    return OutputConstraint(type="json_schema", json_schema=schema, name="plan")


def plan_token_bound(max_steps: int) -> int:
    """The most tokens a plan decoded under `plan_constraint(max_steps)` can take on the kit's llama.cpp backend.

    The longest text its grammar admits: every step at MAX_STEP_CHARS, every optional space taken (the grammar of
    llama-cpp-python's converter allows one space between tokens of the JSON), at one token per character, the
    worst case since no character takes more than one byte; plus the end-of-generation token. With this budget a
    plan always closes: a run never stops at `max_tokens` in the middle of its JSON.
    """
    step = '"' + "x" * MAX_STEP_CHARS + '" '
    longest = '{ "subtasks" : [ ' + ", ".join([step] * max_steps) + "] } "
    return len(longest) + 1


CONSTRAINED_PLAN_MAX_TOKENS = plan_token_bound(8)  # 540 for 8 steps (router.pipeline.MAX_PLAN_STEPS)


def content_words(text: str) -> set[str]:
    """The words of a text that carry its subject (three letters or more, not a stopword), lower case."""
    spaced = _CAMEL_CASE.sub(r"\1 \2", text)  # "ComputeArea" is two words
    return {word for word in re.findall(r"[a-z0-9]+", spaced.lower()) if len(word) > 2 and word not in STOPWORDS}


def plan_is_on_topic(steps: Sequence[str], query: str) -> bool:
    """Whether every step shares a content word with the query: a plan decoded under the schema is always valid
    JSON, but a small model sometimes fills it with something else (dates, digits); such a plan is not used."""
    return bool(steps) and not off_topic_steps(steps, query)


def off_topic_steps(steps: Sequence[str], query: str) -> list[int]:
    """The positions (from 1) of the steps that share no content word with the query."""
    words = content_words(query)
    return [position for position, step in enumerate(steps, 1) if not content_words(step) & words]


def off_topic_reason(steps: Sequence[str], query: str) -> str:
    """Why a plan was not used, for the trace: which of its steps are about something else."""
    off = off_topic_steps(steps, query)
    named = ", ".join(str(position) for position in off)
    subject = f"steps {named} of {len(steps)} share" if len(off) > 1 else f"step {named} of {len(steps)} shares"
    return f"off topic: {subject} no word with the task"


def step_constraints(options: TaskOptions, is_final: bool) -> tuple[OutputConstraint | None, OutputConstraint | None]:
    """(whole-output constraint, answer constraint) of a step's runs: only the last step carries the task's."""
    if not is_final:
        return None, None
    return options.output, options.answer


def required_kinds(*constraints: OutputConstraint | None) -> tuple[str, ...]:
    """The constraint kinds an agent must honour to take a run with these constraints."""
    return tuple(sorted({constraint.type for constraint in constraints if constraint is not None}))


def can_honour(agent: Any, kinds: Iterable[str]) -> bool:
    """True when an agent view announces every kind (an agent that announces none honours none)."""
    announced = getattr(agent, "constraints", ())
    return all(kind in announced for kind in kinds)


def honouring(agents: Sequence[Any], kinds: Sequence[str]) -> list[Any]:
    """The agents that can honour every kind in `kinds`."""
    return [agent for agent in agents if can_honour(agent, kinds)]


def unsupported_reason(kinds: Sequence[str], live: int) -> str:
    """Why a constrained run found no agent, for the client's ErrorReply."""
    return (
        f"no live agent can honour a {' and '.join(kinds)} output constraint ({live} live agent(s), none "
        "announces it in its beacon); start an agent on a backend that constrains decoding, e.g. llamacpp"
    )


def constrained_answer(request: RunRequest, result: RunResult) -> ExtractedAnswer:
    """The answer of a run: its constrained answer or output in canonical form; free text is extracted as ever.

    A run that should have been constrained but is not valid (a server that ignored `response_format`) falls back
    to free extraction, so the vote still sees something, marked `unconstrained`.
    """
    if request.answer_constraint is not None and result.answer is not None:
        return _canonical(result.answer, request.answer_constraint)
    if request.constraint is not None:
        return _canonical(result.text, request.constraint)
    return extract_answer(result.text)


def _canonical(text: str, constraint: OutputConstraint) -> ExtractedAnswer:
    canonical = canonical_answer(text, constraint)
    if canonical is None:
        found = extract_answer(text)
        return ExtractedAnswer(found.raw, found.canonical, "unconstrained", found.confidence)
    if constraint.type != "json_schema":
        canonical = canonicalize(canonical)  # numbers: "1,000" and "1000.0" agree; text: case and spaces
    return ExtractedAnswer(raw=text.strip(), canonical=canonical, method="constrained")
