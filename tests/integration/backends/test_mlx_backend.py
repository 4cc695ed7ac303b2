"""MLX through mlx-lm on a tiny model built here: random weights, a BPE tokenizer trained on a few lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("mlx.core", reason='mlx is not importable; on Linux install it with `pip install "mlx[cpu]"`')
pytest.importorskip("mlx_lm", reason="mlx-lm is not installed")
pytest.importorskip("transformers", reason="transformers (an mlx-lm dependency) is not installed")

from edge_agent.backends.base import BackendUnavailable, ChatMessage, GenerationOptions
from edge_agent.backends.mlx import MLXBackend
from edge_agent.backends.registry import create_backend
from model_store import resolve_model

pytestmark = pytest.mark.slow

TRAINING_LINES = [
    "the quick brown fox jumps over the lazy dog",
    "what is two plus two? final answer: four",
    "system: you are a careful math solver",
]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "you are a careful math solver"},
    {"role": "user", "content": "what is two plus two?"},
]


def build_tiny_model(directory: Path, chat_template: str | None) -> Path:
    """Save a one-layer llama with random weights and a byte-level BPE tokenizer into ``directory``."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    directory.mkdir(parents=True)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(TRAINING_LINES, trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>")
    if chat_template is not None:
        wrapped.chat_template = chat_template
    wrapped.save_pretrained(directory)
    config = {
        "model_type": "llama",
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "intermediate_size": 64,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "vocab_size": tokenizer.get_vocab_size(),
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "max_position_embeddings": 256,
    }
    (directory / "config.json").write_text(json.dumps(config))
    mx.random.seed(0)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    mx.save_safetensors(str(directory / "model.safetensors"), dict(tree_flatten(model.parameters())))
    return directory


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("mlx") / "tiny-chat", CHAT_TEMPLATE)


def test_generates_text_and_token_counts(tiny_model: Path) -> None:
    backend = MLXBackend(tiny_model)
    try:
        assert backend.supports_chat_template
        assert (backend.name, backend.model, backend.device) == ("mlx", "tiny-chat", "cpu")
        generation = backend.generate(MESSAGES, GenerationOptions(max_tokens=6, seed=3))
        assert generation.text
        assert generation.prompt_tokens > 0
        assert 0 < generation.completion_tokens <= 6
        assert generation.latency_s > 0
        again = backend.generate(MESSAGES, GenerationOptions(max_tokens=6, seed=3))
        assert again.text == generation.text
    finally:
        backend.close()


def test_streams_pieces_and_stops_when_the_sink_says_so(tiny_model: Path) -> None:
    backend = MLXBackend(tiny_model)
    try:
        pieces: list[str] = []
        options = GenerationOptions(max_tokens=6, seed=3)
        streamed = backend.stream(MESSAGES, options, lambda piece: pieces.append(piece) or True)
        assert "".join(pieces).strip() == streamed.text == backend.generate(MESSAGES, options).text
        stopped: list[str] = []
        backend.stream(MESSAGES, options, lambda piece: stopped.append(piece) or False)
        assert len(stopped) == 1
    finally:
        backend.close()


def test_plain_prompt_when_the_tokenizer_has_no_template(tmp_path: Path) -> None:
    backend = MLXBackend(build_tiny_model(tmp_path / "tiny-base", chat_template=None))
    try:
        assert not backend.supports_chat_template
        generation = backend.generate(MESSAGES, GenerationOptions(max_tokens=4, temperature=0.0))
        assert generation.completion_tokens > 0 and generation.prompt_tokens > 0
    finally:
        backend.close()


def test_registry_and_resolve_find_the_mlx_directory(tiny_model: Path) -> None:
    assert resolve_model(str(tiny_model)) == tiny_model
    backend = create_backend("mlx", model_path=tiny_model)
    try:
        assert backend.generate(MESSAGES, GenerationOptions(max_tokens=2)).completion_tokens > 0
    finally:
        backend.close()


def test_a_directory_that_is_not_a_model_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="no MLX model at"):
        MLXBackend(tmp_path)
