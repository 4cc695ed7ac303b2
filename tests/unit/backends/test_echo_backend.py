"""The deterministic echo backend."""

from __future__ import annotations

import pytest

from edge_agent.backends.base import BackendUnavailable, ChatMessage, GenerationOptions
from edge_agent.backends.echo import EchoBackend

OPTIONS = GenerationOptions()


def chat(text: str) -> list[ChatMessage]:
    return [{"role": "system", "content": "You are a tester."}, {"role": "user", "content": text}]


def test_same_input_same_output_across_instances() -> None:
    first = EchoBackend().generate(chat("what is two plus two"), OPTIONS)
    second = EchoBackend().generate(chat("what is two plus two"), OPTIONS)
    assert first.text == second.text
    assert first.text.startswith("echo: what is two plus two\nFinal answer: ")


def test_different_inputs_give_different_answers() -> None:
    backend = EchoBackend()
    answers = {backend.generate(chat(text), OPTIONS).text.splitlines()[-1] for text in ("a", "b", "c")}
    assert len(answers) == 3


def test_fixed_answer() -> None:
    generation = EchoBackend(answer="42").generate(chat("anything"), OPTIONS)
    assert generation.text.splitlines()[-1] == "Final answer: 42"


def test_token_counts_are_word_counts() -> None:
    generation = EchoBackend(answer="42").generate(chat("one two three"), OPTIONS)
    assert generation.prompt_tokens == 4 + 3
    assert generation.completion_tokens == len(["echo:", "one", "two", "three", "Final", "answer:", "42"])
    assert (generation.backend, generation.model) == ("echo", "echo")


def test_max_tokens_caps_the_echo() -> None:
    generation = EchoBackend(answer="x").generate(chat("a b c d e"), GenerationOptions(max_tokens=2))
    assert generation.text.splitlines()[0] == "echo: a b"


def test_delay_is_observed_in_latency() -> None:
    generation = EchoBackend(delay_s=0.05).generate(chat("slow"), OPTIONS)
    assert generation.latency_s >= 0.05


def test_negative_delay_is_rejected() -> None:
    with pytest.raises(ValueError, match="delay_s"):
        EchoBackend(delay_s=-1)


def test_closed_backend_refuses_work() -> None:
    backend = EchoBackend()
    backend.close()
    with pytest.raises(BackendUnavailable):
        backend.generate(chat("x"), OPTIONS)


def test_stream_gives_the_same_reply_word_by_word() -> None:
    backend = EchoBackend(answer="4")
    messages = chat("what is two and two")
    pieces: list[str] = []
    streamed = backend.stream(messages, GenerationOptions(), lambda piece: pieces.append(piece) or True)
    assert "".join(pieces) == streamed.text == backend.generate(messages, GenerationOptions()).text
    assert len(pieces) > 3


def test_stream_stops_when_the_sink_says_so() -> None:
    streamed = EchoBackend().stream(chat("a b c d e f"), GenerationOptions(), lambda p: False)
    assert streamed.text == "echo:" and streamed.completion_tokens == 1
