"""The five Symphony agent personas and the chat messages an agent sends its model for a subtask.

Every system prompt ends with the same output contract: finish with exactly one line
``Final answer: ...`` (or one JSON object ``{"final_answer": ..., "confidence": ...}``), which the
router's answer extraction parses for voting.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from edge_agent.backends.base import ChatMessage
from shared.errors import SymphonyError

FINAL_ANSWER_INSTRUCTION = (
    "Think step by step, briefly. End your reply with exactly one line of the form "
    "'Final answer: <answer>' and nothing after it; alternatively end with exactly one JSON object "
    '{"final_answer": "<answer>", "confidence": <number from 0 to 1>}.'
)


class UnknownPersona(SymphonyError, ValueError):
    """No preset persona has the requested name; the message lists the valid names."""


class Persona(BaseModel):
    """An agent role: its name, the capabilities it advertises in the beacon, and its system prompt."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    capabilities: tuple[str, ...]
    system_prompt: str


def _persona(name: str, capabilities: tuple[str, ...], role: str) -> Persona:
    return Persona(name=name, capabilities=capabilities, system_prompt=f"{role} {FINAL_ANSWER_INSTRUCTION}")


PERSONAS: dict[str, Persona] = {
    persona.name: persona
    for persona in (
        _persona(
            "planner",
            ("planning", "analysis", "tool-use"),
            "You are a planner. Break the task into a short list of concrete, independent steps, "
            "analyse what each step needs, and say which tools or experts should handle it.",
        ),
        _persona(
            "coder",
            ("code-implementation", "debugging"),
            "You are a code engineer. Write correct, minimal code for the task, find and fix bugs, "
            "and explain the key decision in one or two sentences.",
        ),
        _persona(
            "math",
            ("mathematical-reasoning", "verification"),
            "You are a math solver. Work the problem out carefully, check the result by a second "
            "method or by substitution, and give the answer as a number or expression.",
        ),
        _persona(
            "retriever",
            ("retrieval", "data-collection", "fact-checking"),
            "You are a retriever and fact-checker. Use the given context first, state the facts that "
            "answer the task, and say plainly when a claim is unsupported.",
        ),
        _persona(
            "writer",
            ("writing", "summarization"),
            "You are a writer. Produce clear, concise prose for the task, and summarise long material "
            "into its essential points.",
        ),
    )
}


def persona_names() -> list[str]:
    """Return the preset persona names in a stable order."""
    return list(PERSONAS)


def get_persona(name: str) -> Persona:
    """Return the preset persona called ``name``; raise ``UnknownPersona`` naming the valid choices."""
    try:
        return PERSONAS[name]
    except KeyError:
        raise UnknownPersona(f"unknown persona {name!r}; choose one of: {', '.join(PERSONAS)}") from None


def build_messages(persona_system_prompt: str, subtask: str, context: list[str] | None = None) -> list[ChatMessage]:
    """Build the chat for one subtask: the persona's system prompt, then the context and the subtask.

    Context items (earlier subtask results, retrieved facts) are numbered so the model can refer to
    them; an empty or missing context adds nothing.
    """
    parts = []
    if context:
        numbered = "\n".join(f"[{index}] {item}" for index, item in enumerate(context, start=1))
        parts.append(f"Context:\n{numbered}")
    parts.append(f"Task: {subtask}")
    return [
        {"role": "system", "content": persona_system_prompt},
        {"role": "user", "content": "\n\n".join(parts)},
    ]
