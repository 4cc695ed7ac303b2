"""Apple's MLX through mlx-lm: safetensors models on the Apple-silicon GPU (or the CPU build elsewhere).

Only a local model directory is accepted, so mlx-lm never reaches for a model hub at run time. The
tokenizer's chat template formats the conversation when it has one; otherwise a plain transcript.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from edge_agent.backends.base import (
    PLAIN_PROMPT_STOPS,
    BackendUnavailable,
    ChatMessage,
    Generation,
    GenerationOptions,
    ServerError,
    TokenSink,
    plain_prompt,
)
from model_store import is_mlx_model_dir


class MLXBackend:
    """One mlx-lm model and tokenizer serving one generation at a time."""

    name = "mlx"
    constraint_kinds: tuple[str, ...] = ()

    def __init__(self, model_path: str | Path) -> None:
        path = Path(model_path).expanduser()
        if not is_mlx_model_dir(path):
            raise BackendUnavailable(f"no MLX model at {path}: expected a directory with config.json and *.safetensors")
        self._mlx_lm, self._make_sampler, self._mlx_core = _import_mlx()
        try:
            self._model, self._tokenizer = self._mlx_lm.load(str(path))
        except (ValueError, OSError, KeyError) as error:
            raise BackendUnavailable(f"mlx-lm could not load the model {path}: {error}") from error
        self.model = path.name
        self.model_path = path
        self.supports_chat_template = getattr(self._tokenizer, "chat_template", None) is not None
        self.device = str(self._mlx_core.default_device().type).rsplit(".", 1)[-1]
        self._lock = threading.Lock()
        self._closed = False

    def generate(self, messages: list[ChatMessage], options: GenerationOptions) -> Generation:
        """Generate a reply, stopping at ``options.stop`` strings, which are cut from the text."""
        return self.stream(messages, options, lambda piece: True)

    def stream(self, messages: list[ChatMessage], options: GenerationOptions, sink: TokenSink) -> Generation:
        """Generate, handing each new piece of text to ``sink`` (never past a stop string); False stops it."""
        if options.constraint is not None:
            # No constrained decoding for MLX here yet: announce none (beacons say so) rather than decode freely.
            raise BackendUnavailable(
                f"the MLX backend cannot honour a {options.constraint.type} constraint (no grammar engine for MLX "
                "is installed); route constrained runs to a llama.cpp agent"
            )
        prompt = self._prompt(messages)
        stops = list(options.stop) if self.supports_chat_template else [*options.stop, *PLAIN_PROMPT_STOPS]
        sampler = self._make_sampler(temp=options.temperature, top_p=options.top_p)
        started = time.perf_counter()
        with self._lock:
            if self._closed:
                raise BackendUnavailable(f"the MLX backend for {self.model} was closed")
            if options.seed is not None:
                self._mlx_core.random.seed(options.seed)
            text, prompt_tokens, completion_tokens = self._stream(prompt, options.max_tokens, sampler, stops, sink)
        return Generation(
            text=text.strip(),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=time.perf_counter() - started,
            backend=self.name,
            model=self.model,
        )

    def _prompt(self, messages: list[ChatMessage]) -> str:
        if self.supports_chat_template:
            return str(self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        return plain_prompt(messages)

    def _stream(
        self, prompt: str, max_tokens: int, sampler: Any, stops: list[str], sink: TokenSink
    ) -> tuple[str, int, int]:
        text, prompt_tokens, completion_tokens = "", 0, 0
        try:
            for response in self._mlx_lm.stream_generate(
                self._model, self._tokenizer, prompt, max_tokens=max_tokens, sampler=sampler
            ):
                sent = len(text)
                text += response.text
                prompt_tokens, completion_tokens = response.prompt_tokens, response.generation_tokens
                cut = _cut_at_stop(text, stops)
                if cut is not None:
                    if len(cut) > sent:
                        sink(cut[sent:])
                    return cut, prompt_tokens, completion_tokens
                if response.text and not sink(response.text):
                    return text, prompt_tokens, completion_tokens
        except (ValueError, RuntimeError) as error:
            raise ServerError(f"mlx-lm failed while generating: {error}") from error
        return text, prompt_tokens, completion_tokens

    def close(self) -> None:
        """Drop the model so its memory can be reclaimed; later calls raise ``BackendUnavailable``."""
        with self._lock:
            self._closed = True
            self._model = self._tokenizer = None


def _cut_at_stop(text: str, stops: list[str]) -> str | None:
    positions = [text.find(stop) for stop in stops if stop and stop in text]
    return text[: min(positions)] if positions else None


def _import_mlx() -> tuple[Any, Any, Any]:
    try:
        import mlx.core as mlx_core
        import mlx_lm
        from mlx_lm.sample_utils import make_sampler
    except ImportError as error:
        hint = 'install it with `pip install "symphony-edge[mlx]"` (on Linux: `pip install "mlx[cpu]" mlx-lm`)'
        raise BackendUnavailable(f"mlx-lm is not usable ({error}); {hint}") from error
    return mlx_lm, make_sampler, mlx_core
