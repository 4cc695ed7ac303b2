"""Constrained runs on an agent: check the backend can honour the constraint, and the two-phase answer.

A run asked for an answer of a type (`RunRequest.answer_constraint`) reasons freely first, then the same
conversation, with its reasoning as the assistant's turn, is asked for the final answer alone, decoded under the
constraint. The answer cannot fail to parse, so ballots compare canonical values; the reasoning stays in the text
for the trace and for the answer's readers:

    phase 1   system, Task: ...                        -> reasoning (free decoding)
    phase 2   system, Task: ..., reasoning, "answer"   -> answer (constrained), short
    text      reasoning + "\\nFinal answer: " + answer

With llama.cpp the second phase reuses the first phase's prompt cache: the conversation shares its prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edge_agent.backends.base import (
    BackendUnavailable,
    ChatMessage,
    Generation,
    GenerationOptions,
    constraint_kinds,
)
from shared.messages import OutputConstraint, RunRequest

ANSWER_SEPARATOR = "\nFinal answer: "
ANSWER_MAX_TOKENS = 48
REASONING_TAIL_CHARS = 200  # a number, a choice or a short text; a JSON answer keeps the run's own limit
Generate = Callable[[list[ChatMessage], GenerationOptions], Generation]


@dataclass(frozen=True)
class Answered:
    """A run's generation (both phases together) and its constrained answer (None for a free run)."""

    generation: Generation
    answer: str | None = None


def refuse_unsupported(request: RunRequest, backend: object, agent_id: str) -> None:
    """Raise BackendUnavailable when the request carries a constraint this agent's backend does not honour."""
    supported = constraint_kinds(backend)
    for constraint in (request.constraint, request.answer_constraint):
        if constraint is not None and constraint.type not in supported:
            kinds = ", ".join(supported) or "none"
            raise BackendUnavailable(
                f"agent {agent_id} ({getattr(backend, 'name', '?')} backend) cannot honour a {constraint.type} "
                f"constraint; it supports: {kinds}"
            )


def answer_prompt(subtask: str, constraint: OutputConstraint, reasoning: str = "") -> str:
    """The second phase's question: the task again, the end of the reasoning (a small model copies from what it
    sees close by, and the answer is usually there), and the answer alone in the constraint's form."""
    if constraint.type == "choice":
        form = "exactly one of: " + ", ".join(constraint.choices[:20])
    elif constraint.type == "json_schema":
        form = "JSON only"
    elif constraint.name == "number":
        form = "a number only, no units"
    else:
        form = "a few words only"
    tail = " ".join(reasoning.split())[-REASONING_TAIL_CHARS:]
    recalled = f'Your working ended with: "{tail}"\n' if tail else ""
    return f"Task: {subtask}\n{recalled}Now give the final answer to this task, {form}."


def reason_then_answer(
    generate: Generate,
    messages: list[ChatMessage],
    options: GenerationOptions,
    request: RunRequest,
    between: Callable[[str], object] = lambda text: None,
) -> Answered:
    """Phase 1 free, phase 2 constrained to `request.answer_constraint` (see the module docstring); `between`
    receives the separator written between the phases (a stream sends it to the client)."""
    constraint = request.answer_constraint
    assert constraint is not None
    reasoning = generate(messages, options)
    follow_up: list[ChatMessage] = [
        *messages,
        {"role": "assistant", "content": reasoning.text},
        {"role": "user", "content": answer_prompt(request.subtask, constraint, reasoning.text)},
    ]
    limit = options.max_tokens if constraint.type == "json_schema" else min(options.max_tokens, ANSWER_MAX_TOKENS)
    between(ANSWER_SEPARATOR)
    final = generate(follow_up, options.model_copy(update={"constraint": constraint, "max_tokens": limit}))
    answer = final.text.strip()
    return Answered(
        Generation(
            text=f"{reasoning.text}{ANSWER_SEPARATOR}{answer}",
            prompt_tokens=reasoning.prompt_tokens + final.prompt_tokens,
            completion_tokens=reasoning.completion_tokens + final.completion_tokens,
            latency_s=reasoning.latency_s + final.latency_s,
            backend=reasoning.backend,
            model=reasoning.model,
        ),
        answer,
    )
