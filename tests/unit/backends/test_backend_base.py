"""Generation options, the error tree and prompt helpers."""

from __future__ import annotations

import pydantic
import pytest

from edge_agent.backends.base import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ChatMessage,
    GenerationOptions,
    LogicError,
    PaymentRequired,
    ServerError,
    last_user_message,
    plain_prompt,
)


def test_options_defaults() -> None:
    options = GenerationOptions()
    assert (options.max_tokens, options.temperature, options.top_p, options.seed, options.stop) == (
        256,
        0.7,
        0.95,
        None,
        [],
    )


def test_options_reject_unknown_keys() -> None:
    with pytest.raises(pydantic.ValidationError, match="max_new_tokens"):
        GenerationOptions.model_validate({"max_new_tokens": 10})


@pytest.mark.parametrize("bad", [{"max_tokens": 0}, {"temperature": -0.1}, {"top_p": 0.0}, {"top_p": 1.5}])
def test_options_reject_out_of_range_values(bad: dict[str, float]) -> None:
    with pytest.raises(pydantic.ValidationError):
        GenerationOptions.model_validate(bad)


def test_options_are_frozen() -> None:
    with pytest.raises(pydantic.ValidationError):
        GenerationOptions().max_tokens = 3


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (BackendTimeout, "timeout"),
        (BackendUnavailable, "backend_error"),
        (PaymentRequired, "payment_required"),
        (ServerError, "server_error"),
        (LogicError, "logic_error"),
    ],
)
def test_error_kinds_match_the_wire(error: type[BackendError], kind: str) -> None:
    assert error.kind == kind
    assert issubclass(error, BackendError)


def test_plain_prompt_is_a_transcript_ending_with_the_assistant_turn() -> None:
    messages: list[ChatMessage] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "2+2?"},
    ]
    assert plain_prompt(messages) == "System: Be brief.\nUser: Hi\nAssistant: Hello\nUser: 2+2?\nAssistant:"
    assert last_user_message(messages) == "2+2?"
    assert last_user_message([{"role": "system", "content": "x"}]) == ""
