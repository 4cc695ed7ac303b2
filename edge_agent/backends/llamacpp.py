"""llama.cpp through llama-cpp-python: GGUF models on the CPU, or offloaded to a CUDA/Metal GPU.

The model's own chat template (GGUF metadata ``tokenizer.chat_template``) formats the conversation.
A GGUF without one (a base model) gets a plain "System:/User:/Assistant:" transcript instead, because
llama-cpp-python would otherwise silently fall back to the Llama-2 format.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent.backends import grammar_sampling as grammar_sampling_module
from edge_agent.backends import guidance
from edge_agent.backends.base import (
    PLAIN_PROMPT_STOPS,
    BackendUnavailable,
    ChatMessage,
    Generation,
    GenerationOptions,
    LogicError,
    ServerError,
    TokenSink,
    plain_prompt,
)
from model_store import check_gguf
from shared.constraints import ConstraintError, canonical_json, to_gbnf
from shared.messages import OutputConstraint

_log = logging.getLogger(__name__)

GRAMMAR_CACHE_SIZE = 64
GRAMMAR_SAMPLING = ("check-first", "grammar-first")
"""check-first: draw, then check the token (fast); grammar-first: llama-cpp-python's stock chain (grammar first)."""
CONSTRAINT_ENGINES = ("auto", "llguidance", "llama.cpp")
"""What checks a constrained run's tokens: LLGuidance (fast masks; `auto` picks it when installed, check-first
sampling only) or llama.cpp's own grammar engine."""


class LlamaCppBackend:
    """One ``llama_cpp.Llama`` instance serving one generation at a time.

    ``use_chat_template`` forces the plain-prompt path when ``False``; by default it follows the model.
    ``constraint_engine`` says what checks constrained runs: ``auto`` (LLGuidance when installed and sampling is
    check-first, else llama.cpp's grammar), ``llguidance`` or ``llama.cpp``; ``constraint_engine`` then names the one
    in use.
    """

    name = "llamacpp"
    constraint_kinds = ("json_schema", "regex", "choice")

    def __init__(
        self,
        model_path: str | Path,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        seed: int | None = None,
        use_chat_template: bool | None = None,
        grammar_sampling: str = "check-first",
        constraint_engine: str = "auto",
    ) -> None:
        path = check_gguf(model_path)
        llama_class = _import_llama()
        if grammar_sampling not in GRAMMAR_SAMPLING:
            raise ValueError(f"grammar_sampling must be one of {', '.join(GRAMMAR_SAMPLING)}, not {grammar_sampling!r}")
        if constraint_engine not in CONSTRAINT_ENGINES:
            raise ValueError(
                f"constraint_engine must be one of {', '.join(CONSTRAINT_ENGINES)}, not {constraint_engine!r}"
            )
        check_first = grammar_sampling == "check-first" and grammar_sampling_module.supported()
        if check_first:
            # draw, then check the one token against the grammar (llama.cpp's common sampler): see grammar_sampling
            llama_class = grammar_sampling_module.grammar_first_llama(llama_class)
        self.grammar_sampling = grammar_sampling
        self.constraint_engine = _constraint_engine(constraint_engine, check_first)
        threads = n_threads if n_threads is not None else max(1, (os.cpu_count() or 1) - 1)
        try:
            self._llm = llama_class(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=threads,
                n_gpu_layers=n_gpu_layers,
                seed=seed if seed is not None else 0xFFFFFFFF,  # llama.cpp's "random seed"
                verbose=False,
            )
        except ValueError as error:
            # llama-cpp-python raises ValueError for a file its loader rejects (bad tensors, truncation)
            raise BackendUnavailable(f"llama.cpp could not load the model {path}: {error}") from error
        has_template = bool(self._llm.metadata.get("tokenizer.chat_template"))
        self.supports_chat_template = has_template if use_chat_template is None else use_chat_template
        self.model = path.name
        self.model_path = path
        self.device = "gpu" if n_gpu_layers != 0 and _gpu_offload_supported() else "cpu"
        self._lock = threading.Lock()
        self.guidance = guidance.GuidanceEngine(self._llm) if self.constraint_engine == "llguidance" else None
        self.grammars = GrammarCache(self._compile_guided if self.guidance is not None else _compile)

    def generate(self, messages: list[ChatMessage], options: GenerationOptions) -> Generation:
        """Generate a reply with the chat template when there is one, else a plain transcript prompt."""
        sampling: dict[str, Any] = {
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
            "top_p": options.top_p,
            "seed": options.seed,
        }
        started = time.perf_counter()
        with self._lock:
            if self._llm is None:
                raise BackendUnavailable(f"the llama.cpp backend for {self.model} was closed")
            response = self._complete(messages, options, sampling)
        latency = time.perf_counter() - started
        usage = response.get("usage") or {}
        return Generation(
            text=_response_text(response).strip(),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            latency_s=latency,
            backend=self.name,
            model=self.model,
        )

    def stream(self, messages: list[ChatMessage], options: GenerationOptions, sink: TokenSink) -> Generation:
        """Generate token by token, handing each piece to ``sink``; stops within a token when it returns False."""
        sampling: dict[str, Any] = {
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
            "top_p": options.top_p,
            "seed": options.seed,
            "stream": True,
        }
        started = time.perf_counter()
        pieces: list[str] = []
        with self._lock:
            if self._llm is None:
                raise BackendUnavailable(f"the llama.cpp backend for {self.model} was closed")
            chunks = self._complete(messages, options, sampling)
            try:
                for chunk in chunks:
                    piece = _chunk_text(chunk)
                    if not piece:
                        continue
                    pieces.append(piece)
                    if not sink(piece):
                        break
            except ValueError as error:
                raise LogicError(f"llama.cpp rejected the request: {error}") from error
            except RuntimeError as error:
                raise ServerError(f"llama.cpp failed while generating: {error}") from error
            finally:
                chunks.close()
            context_tokens = int(self._llm.n_tokens)
        completion_tokens = len(pieces)  # llama-cpp-python yields one chunk per token
        return Generation(
            text="".join(pieces).strip(),
            prompt_tokens=max(0, context_tokens - completion_tokens),
            completion_tokens=completion_tokens,
            latency_s=time.perf_counter() - started,
            backend=self.name,
            model=self.model,
        )

    def _complete(self, messages: list[ChatMessage], options: GenerationOptions, sampling: dict[str, Any]) -> Any:
        """The response dict, or with ``sampling["stream"]`` the iterator of its chunks."""
        wrap = (lambda response: response) if sampling.get("stream") else dict
        if options.constraint is not None:
            sampling = {**sampling, "grammar": self.grammars.get(options.constraint)}
        try:
            if self.supports_chat_template:
                stop = options.stop or None
                return wrap(self._llm.create_chat_completion(messages=messages, stop=stop, **sampling))
            stop = [*options.stop, *PLAIN_PROMPT_STOPS]
            return wrap(self._llm.create_completion(prompt=plain_prompt(messages), stop=stop, **sampling))
        except ValueError as error:
            # raised for requests the model cannot take, such as a prompt longer than n_ctx
            raise LogicError(f"llama.cpp rejected the request: {error}") from error
        except RuntimeError as error:
            raise ServerError(f"llama.cpp failed while generating: {error}") from error

    def _compile_guided(self, constraint: OutputConstraint) -> Any:
        """LLGuidance's matcher of a constraint, or llama.cpp's grammar for one LLGuidance cannot take."""
        assert self.guidance is not None
        try:
            return self.guidance.compile(constraint)
        except ConstraintError as error:
            _log.info("LLGuidance cannot take this %s constraint, llama.cpp's grammar will: %s", constraint.type, error)
            return _compile(constraint)

    def close(self) -> None:
        """Free the model; later calls raise ``BackendUnavailable``."""
        with self._lock:
            llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()


class GrammarCache:
    """Grammars by constraint, compiled once by `compile` and reused; the oldest entry goes when it is full. By
    default llama.cpp grammars (a JSON schema through llama-cpp-python's converter, a regex or choice through
    `shared.constraints.to_gbnf`); the backend passes LLGuidance's compiler when it uses LLGuidance."""

    def __init__(
        self, compile: Callable[[OutputConstraint], Any] | None = None, size: int = GRAMMAR_CACHE_SIZE
    ) -> None:
        self.compile = compile or _compile
        self.size = size
        self._grammars: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.compiled = 0  # conversions done (cache misses)
        self.compile_s = 0.0  # time spent converting

    def get(self, constraint: OutputConstraint) -> Any:
        """The grammar of a constraint; LogicError when it cannot become one (the request is bad, not the engine)."""
        key = canonical_json(constraint.model_dump(exclude={"name"}))
        with self._lock:
            grammar = self._grammars.get(key)
        if grammar is not None:
            return grammar
        started = time.perf_counter()
        grammar = self.compile(constraint)
        with self._lock:
            self.compiled += 1
            self.compile_s += time.perf_counter() - started
            if len(self._grammars) >= self.size:
                self._grammars.pop(next(iter(self._grammars)))
            self._grammars[key] = grammar
        return grammar


def _compile(constraint: OutputConstraint) -> Any:
    from llama_cpp import LlamaGrammar

    try:
        if constraint.type == "json_schema":
            return LlamaGrammar.from_string(json_grammar(constraint.json_schema or {}), verbose=False)
        return LlamaGrammar.from_string(to_gbnf(constraint), verbose=False)
    except (ConstraintError, ValueError, KeyError, TypeError, RecursionError) as error:
        # llama-cpp-python's converter raises these on schema features it does not know
        raise LogicError(f"llama.cpp cannot turn this {constraint.type} constraint into a grammar: {error}") from None


_LOOSE_CHAR = r'char ::= [^"\\] |'
_JSON_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'


def json_grammar(schema: dict[str, Any]) -> str:
    """The GBNF of a JSON schema (llama-cpp-python's converter), with JSON's own string characters: the converter
    lets a raw newline or tab into a string, which no JSON parser reads, and small models do write them."""
    from llama_cpp import llama_grammar

    return str(llama_grammar.json_schema_to_gbnf(json.dumps(schema))).replace(_LOOSE_CHAR, _JSON_CHAR)


def _chunk_text(chunk: dict[str, Any]) -> str:
    """The new text of one streamed chunk (chat: the delta's content; plain completion: the text)."""
    choice = chunk["choices"][0]
    if "delta" in choice:
        return str(choice["delta"].get("content") or "")
    return str(choice.get("text") or "")


def _response_text(response: dict[str, Any]) -> str:
    choice = response["choices"][0]
    if "message" in choice:
        return str(choice["message"].get("content") or "")
    return str(choice.get("text") or "")


def _constraint_engine(wanted: str, check_first: bool) -> str:
    """The engine a backend uses: LLGuidance needs check-first sampling (the stock chain takes llama.cpp grammars)."""
    usable = check_first and guidance.available()
    if wanted == "llguidance" and not usable:
        why = "it samples grammar-first" if not check_first else "llguidance is not installed"
        raise BackendUnavailable(f"the llguidance constraint engine is not usable: {why}")
    if wanted == "auto":
        return "llguidance" if usable else "llama.cpp"
    return wanted


def _import_llama() -> Any:
    try:
        from llama_cpp import Llama
    except (ImportError, OSError) as error:
        hint = 'install it with `pip install "symphony-edge[llamacpp]"`'
        raise BackendUnavailable(f"llama-cpp-python is not usable ({error}); {hint}") from error
    return Llama


def _gpu_offload_supported() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())
