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


MIN_PLAN_STEPS = 1
MAX_PLAN_STEPS = 4  # measured: as useful as 8 (52 % of 50 plans), more distinct, half the budget
MAX_STEP_CHARS = 60  # a step is a short instruction; a small model left unbounded may never close its string
MAX_CHAR_BYTES = 3  # a step's characters are in the Basic Multilingual Plane: at most 3 bytes of UTF-8 each
STEP_CHARACTER = (
    r"[^\x00-\x1F\x22\x5C\x7F-\xA0\xAD\u200B-\u200F\u2028-\u202E\u2060-\u206F\uD7FF-\uF8FF\uFEFF"
    r"\uFFF0-\uFFFF\U00010000-\U0010FFFF]"
)
"""One character of a step: any printable character of the Basic Multilingual Plane (letters, marks, digits,
punctuation, symbols of every script, the space) but `"` and backslash. Excluded: control characters (C0, DEL, C1),
the no-break space, the invisible format characters (soft hyphen, zero-width and direction marks, line and
paragraph separators, word joiners, the byte-order mark), surrogates, private use, the specials block, and
everything above U+FFFF. The surrogates' range starts at U+D7FF (unassigned), because LLGuidance's regex parser
(Rust's) refuses a surrogate as an endpoint; llama.cpp's grammar needs them excluded. No escape sequence
(`\\u0041` is six characters of output for one of text) and no character of more than three bytes, so a step's
length in bytes, hence in tokens, has a known bound."""


def step_pattern(step_chars: int = MAX_STEP_CHARS) -> str:
    """A step: 1..step_chars characters of STEP_CHARACTER (anchored, as llama.cpp's converter needs)."""
    return f"^{STEP_CHARACTER}{{1,{step_chars}}}$"


STEP_PATTERN = step_pattern()


def plan_constraint(
    max_steps: int = MAX_PLAN_STEPS, min_steps: int = MIN_PLAN_STEPS, step_chars: int = MAX_STEP_CHARS
) -> OutputConstraint:
    """The plan schema: {"subtasks": [min_steps..max_steps steps of step_pattern(step_chars)]}."""
    step = {"type": "string", "minLength": 1, "maxLength": step_chars, "pattern": step_pattern(step_chars)}
    subtasks = {"type": "array", "items": step, "minItems": min_steps, "maxItems": max_steps}
    schema = {
        "type": "object",
        "properties": {"subtasks": subtasks},
        "required": ["subtasks"],
        "additionalProperties": False,
    }
    return OutputConstraint(type="json_schema", json_schema=schema, name="plan")


def plan_token_bound(max_steps: int = MAX_PLAN_STEPS, step_chars: int = MAX_STEP_CHARS) -> int:
    """The most tokens a plan decoded under `plan_constraint(max_steps, ..., step_chars)` can take on the kit's
    llama.cpp backend.

    The longest text its grammar admits: every step at step_chars characters of MAX_CHAR_BYTES bytes each, every
    optional space taken (the grammar of llama-cpp-python's converter allows one space between tokens of the
    JSON), counted in bytes of UTF-8: a byte-level BPE token (SmolLM2's, GPT-2's, Llama 3's) holds one byte or
    more, and the grammar refuses empty tokens, so a text of B bytes takes at most B tokens; plus the
    end-of-generation token. With this budget a plan always closes: a run never stops at `max_tokens` in the
    middle of its JSON, whatever the script of its steps.
    """
    step = '"' + "x" * (step_chars * MAX_CHAR_BYTES) + '" '  # one ASCII letter per byte of the widest step
    longest = '{ "subtasks" : [ ' + ", ".join([step] * max_steps) + "] } "
    return len(longest) + 1


CONSTRAINED_PLAN_MAX_TOKENS = plan_token_bound()


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
