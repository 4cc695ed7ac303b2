"""The Symphony persona presets and message building."""

from __future__ import annotations

import pydantic
import pytest

from edge_agent.personas import PERSONAS, UnknownPersona, build_messages, get_persona, persona_names


@pytest.mark.parametrize(
    ("name", "capabilities"),
    [
        ("planner", ("planning", "analysis", "tool-use")),
        ("coder", ("code-implementation", "debugging")),
        ("math", ("mathematical-reasoning", "verification")),
        ("retriever", ("retrieval", "data-collection", "fact-checking")),
        ("writer", ("writing", "summarization")),
    ],
)
def test_presets(name: str, capabilities: tuple[str, ...]) -> None:
    persona = get_persona(name)
    assert persona.capabilities == capabilities
    assert "Final answer:" in persona.system_prompt
    assert '"final_answer"' in persona.system_prompt


def test_exactly_five_presets_in_stable_order() -> None:
    assert persona_names() == ["planner", "coder", "math", "retriever", "writer"]
    assert len({persona.system_prompt for persona in PERSONAS.values()}) == 5


def test_personas_are_frozen() -> None:
    with pytest.raises(pydantic.ValidationError):
        get_persona("math").name = "other"


def test_unknown_persona_lists_valid_names() -> None:
    with pytest.raises(UnknownPersona, match="planner, coder, math, retriever, writer"):
        get_persona("poet")


def test_build_messages_without_context() -> None:
    messages = build_messages("SYSTEM", "Add 2 and 2.")
    assert messages == [{"role": "system", "content": "SYSTEM"}, {"role": "user", "content": "Task: Add 2 and 2."}]
    assert build_messages("SYSTEM", "Add 2 and 2.", []) == messages


def test_build_messages_numbers_the_context() -> None:
    messages = build_messages("SYSTEM", "Sum them.", ["x = 2", "y = 3"])
    assert messages[1]["content"] == "Context:\n[1] x = 2\n[2] y = 3\n\nTask: Sum them."
