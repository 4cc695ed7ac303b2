"""llama.cpp with the bundled SmolLM2 model: chat template path, plain-prompt fallback, errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")

from edge_agent.backends.base import BackendUnavailable, ChatMessage, GenerationOptions, LogicError
from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.backends.registry import choose_backend, create_backend, detect_platform
from edge_agent.backends.throughput import measure_tokens_per_second
from edge_agent.personas import build_messages, get_persona
from model_store import CorruptModel, ModelNotFound, default_model_path

pytestmark = pytest.mark.llamacpp

OPTIONS = GenerationOptions(max_tokens=12, temperature=0.0, seed=7)


@pytest.fixture(scope="module")
def backend() -> Iterator[LlamaCppBackend]:
    created = LlamaCppBackend(default_model_path(), n_ctx=512, n_threads=2, seed=7)
    yield created
    created.close()


def question() -> list[ChatMessage]:
    return build_messages(get_persona("math").system_prompt, "What is 2 + 2?")


def test_generates_with_the_models_chat_template(backend: LlamaCppBackend) -> None:
    assert backend.supports_chat_template
    assert (backend.name, backend.device, backend.model) == ("llamacpp", "cpu", "SmolLM2-135M-Instruct.Q4_1.gguf")
    generation = backend.generate(question(), OPTIONS)
    assert generation.text.strip()
    assert generation.prompt_tokens > 0
    assert 0 < generation.completion_tokens <= OPTIONS.max_tokens
    assert generation.latency_s > 0
    assert generation.backend == "llamacpp"


def test_greedy_generation_with_a_seed_is_repeatable(backend: LlamaCppBackend) -> None:
    assert backend.generate(question(), OPTIONS).text == backend.generate(question(), OPTIONS).text


def test_concurrent_calls_are_serialised(backend: LlamaCppBackend) -> None:
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(backend.generate(question(), OPTIONS).text)) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and len(set(results)) == 1


def test_plain_prompt_fallback_still_answers() -> None:
    fallback = LlamaCppBackend(default_model_path(), n_ctx=512, n_threads=2, use_chat_template=False)
    try:
        assert not fallback.supports_chat_template
        generation = fallback.generate(question(), OPTIONS)
        assert generation.text.strip()
        assert "User:" not in generation.text  # the transcript stops before the model writes a new turn
        assert generation.prompt_tokens > 0 and generation.completion_tokens > 0
    finally:
        fallback.close()


def test_a_prompt_longer_than_the_context_is_a_logic_error(backend: LlamaCppBackend) -> None:
    with pytest.raises(LogicError):
        backend.generate(build_messages("system", "word " * 2000), OPTIONS)


def test_missing_model_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=r"nothing\.gguf"):
        LlamaCppBackend(tmp_path / "nothing.gguf")


def test_corrupt_model_names_the_path(tmp_path: Path) -> None:
    bad_magic = tmp_path / "bad.gguf"
    bad_magic.write_bytes(b"not a model at all, just text" * 4)
    with pytest.raises(CorruptModel, match=r"bad\.gguf"):
        LlamaCppBackend(bad_magic)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(default_model_path().read_bytes()[:4096])
    with pytest.raises(BackendUnavailable, match=r"truncated\.gguf"):
        LlamaCppBackend(truncated, n_ctx=512, n_threads=2)


def test_closed_backend_refuses_work() -> None:
    closed = LlamaCppBackend(default_model_path(), n_ctx=512, n_threads=2)
    closed.close()
    with pytest.raises(BackendUnavailable, match="closed"):
        closed.generate(question(), OPTIONS)


def test_auto_creates_a_working_backend_here() -> None:
    if choose_backend(detect_platform()).name != "llamacpp":
        pytest.skip("AUTO picks MLX on this machine; the bundled GGUF needs llama.cpp")
    auto = create_backend("auto", model_path=default_model_path(), n_ctx=512, n_threads=2)
    try:
        assert auto.name == "llamacpp"
        assert auto.generate(question(), OPTIONS).completion_tokens > 0
    finally:
        auto.close()


def test_measure_tokens_per_second(backend: LlamaCppBackend) -> None:
    assert measure_tokens_per_second(backend, max_tokens=8) > 0


def test_streams_the_same_text_token_by_token(backend: LlamaCppBackend) -> None:
    pieces: list[str] = []
    streamed = backend.stream(question(), OPTIONS, lambda piece: pieces.append(piece) or True)
    assert len(pieces) == streamed.completion_tokens > 1
    assert streamed.text == "".join(pieces).strip()
    assert streamed.prompt_tokens > 0


def test_a_sink_returning_false_stops_the_stream_at_once(backend: LlamaCppBackend) -> None:
    pieces: list[str] = []
    stopped = backend.stream(question(), OPTIONS, lambda piece: pieces.append(piece) or len(pieces) < 2)
    assert len(pieces) == 2 and stopped.completion_tokens == 2
