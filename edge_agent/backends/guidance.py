"""Output constraints on llama.cpp through LLGuidance, the grammar engine of llama.cpp upstream and vLLM.

llama.cpp's own grammar engine takes about 10 ms to mask SmolLM2's 49,152-token vocabulary on this machine, as long
as a decoding step, so even checking first (`grammar_sampling.GrammarFirstCheck`) a constrained run pays a decoding
step for every rejected draw, and short JSON outputs are full of them (the opening brace, the end). LLGuidance
(Rust, an Earley parser over a lexer) checks one token in about a microsecond and masks the vocabulary in 0.01-1 ms.
`GuidanceCheck` keeps the same shape as the llama.cpp path:

    1. draw a token with the ordinary chain (llama.cpp builds the candidates from the logits, as in free sampling)
    2. the matcher tries to take it (`try_consume_tokens`): the usual case, done
    3. rejected: the matcher fills a bitmask of the allowed tokens, the disallowed logits become -inf, draw again

The grammar of a constraint is compiled once (`GuidanceEngine.compile`, cached by the backend's `GrammarCache`)
into a matcher in its start state, and each run takes a copy of it. The tokenizer is built from the llama.cpp
vocabulary once per model, on the first constrained run (0.2-1.1 s for SmolLM2).

A JSON schema goes through LLGuidance's own compiler with at most one space between tokens (`JSON_OPTIONS`),
so the longest output of a bounded schema stays bounded (the plan budget relies on it), and read as llama.cpp's
converter reads it: objects closed to unlisted properties, numbers of at most 16 digits before the point
(`bounded_schema`). A regular expression or a choice goes through `shared.constraints.to_gbnf` (Python's regex
semantics) and LLGuidance's GBNF reader.
`ConstraintError` says LLGuidance cannot take a constraint; the backend then uses llama.cpp's grammar for it.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.constraints import ConstraintError, to_gbnf
from shared.messages import OutputConstraint

JSON_OPTIONS = {"whitespace_flexible": True, "whitespace_pattern": "[ ]?"}
"""At most one space between the JSON's tokens, as llama.cpp's converter allows (the plan budget counts them).
Unbounded whitespace would let a small model pad a bounded schema past its token budget; no whitespace at all
forces a small model off the tokens it prefers (SmolLM2 writes `{ "subtasks": [ "`): its plans then began with
`./` and filled with digits, and 8 of 20 were useful against 12 of 20 with the optional space."""


def available() -> bool:
    """Whether LLGuidance, its llama.cpp helpers and the llama.cpp functions `GuidanceCheck` calls are there."""
    try:
        import llama_cpp
        import llguidance.gbnf_to_lark
        import llguidance.llamacpp  # noqa: F401
    except (ImportError, OSError):
        return False
    return all(hasattr(llama_cpp, name) for name in ("llama_sampler_sample", "llama_vocab_is_eog"))


@dataclass(frozen=True)
class GuidanceGrammar:
    """A compiled constraint: a matcher in its start state, copied by each run (the copy is ~10 microseconds)."""

    matcher: Any  # llguidance.LLMatcher

    def start(self) -> Any:
        return self.matcher.deep_copy()


class GuidanceEngine:
    """LLGuidance for one llama.cpp model: its tokenizer (built on first use) and the compiler of constraints."""

    def __init__(self, llm: Any) -> None:
        self._llm = llm
        self._tokenizer: Any = None
        self.tokenizer_s = 0.0  # time spent building the tokenizer (once per model)

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            import llama_cpp
            from llguidance.llamacpp import lltokenizer_from_vocab

            started = time.perf_counter()
            vocab, size = self._llm._model.vocab, int(self._llm.n_vocab())
            # every end-of-generation token ends a run in llama-cpp-python, so each may close the grammar
            ends = [token for token in range(size) if llama_cpp.llama_vocab_is_eog(vocab, token)]
            with warnings.catch_warnings():  # it asks llama_token_get_attr, deprecated, once per token
                warnings.simplefilter("ignore", DeprecationWarning)
                self._tokenizer = lltokenizer_from_vocab(vocab, n_vocab=size, eos_token=ends)
            self.tokenizer_s = time.perf_counter() - started
        return self._tokenizer

    def compile(self, constraint: OutputConstraint) -> GuidanceGrammar:
        """The matcher of a constraint; ConstraintError when LLGuidance cannot take it (or `to_gbnf` refuses it)."""
        from llguidance import LLMatcher

        matcher = LLMatcher(self.tokenizer, grammar_text(constraint), log_level=0)
        if matcher.is_error():
            raise ConstraintError(f"LLGuidance cannot compile this {constraint.type} constraint: {matcher.get_error()}")
        return GuidanceGrammar(matcher)


def grammar_text(constraint: OutputConstraint) -> str:
    """LLGuidance's grammar of a constraint (a JSON schema natively, a regex or a choice through its GBNF)."""
    from llguidance import LLMatcher
    from llguidance.gbnf_to_lark import GbnfToLarkError, gbnf_to_lark

    if constraint.type == "json_schema":
        schema = bounded_schema(constraint.json_schema or {})
        try:
            return str(LLMatcher.grammar_from_json_schema(schema, overrides=JSON_OPTIONS))  # type: ignore[arg-type]
        except ValueError as error:
            raise ConstraintError(f"LLGuidance cannot read this JSON schema: {error}") from None
    gbnf = to_gbnf(constraint)  # ConstraintError for what no grammar can express
    try:
        return str(LLMatcher.grammar_from_lark(gbnf_to_lark(gbnf)))
    except GbnfToLarkError as error:
        raise ConstraintError(f"LLGuidance cannot read the grammar of this {constraint.type}: {error}") from None


_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMAS = ("items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames")


LARGEST_NUMBER = 10**16 - 1
"""llama-cpp-python's converter allows 16 digits before the point; so does `bounded_schema`."""


def bounded_schema(schema: Any) -> Any:
    """The schema as llama-cpp-python's converter reads it, so that a small model's output still ends: an object
    that lists properties and says nothing of others is closed to others (`additionalProperties: false`, also
    OpenAI's strict mode), and a number without a bound has at most 16 digits before the point. Without these a
    model at temperature 0 adds properties, or writes `111...`, until `max_tokens` cuts its JSON. What the schema
    says explicitly is kept."""
    if not isinstance(schema, dict):
        return [bounded_schema(item) for item in schema] if isinstance(schema, list) else schema
    bounded = dict(schema)
    for key in _SCHEMA_MAPS:
        if isinstance(bounded.get(key), dict):
            bounded[key] = {name: bounded_schema(value) for name, value in bounded[key].items()}
    for key in (*_SCHEMA_LISTS, *_SCHEMAS):
        if key in bounded:
            bounded[key] = bounded_schema(bounded[key])
    if "properties" in bounded and "additionalProperties" not in bounded:
        bounded["additionalProperties"] = False
    if bounded.get("type") in ("integer", "number"):
        if "minimum" not in bounded and "exclusiveMinimum" not in bounded:
            bounded["minimum"] = -LARGEST_NUMBER
        if "maximum" not in bounded and "exclusiveMaximum" not in bounded:
            bounded["maximum"] = LARGEST_NUMBER
    return bounded


class TokenCheck:
    """Check-first over an LLGuidance matcher, free of any engine: the draw and the logits come from outside."""

    def __init__(self, matcher: Any, n_vocab: int) -> None:
        self.matcher = matcher
        self._n_vocab = n_vocab
        self._bitmask = np.zeros((n_vocab + 31) // 32, dtype=np.int32)
        self.rejections = 0  # draws the matcher refused (each cost one mask and one more draw)

    def choose(self, logits: np.ndarray, draw: Callable[[], int]) -> int:
        """The token `draw` gives when the matcher takes it; else the disallowed `logits` (the array `draw` reads)
        become -inf and `draw` is asked again. The matcher has taken the token returned."""
        token = draw()
        if self.matcher.try_consume_tokens([token]) == 1:
            return token
        self.rejections += 1
        logits[~self.allowed()] = -np.inf
        token = draw()
        if not self.matcher.consume_token(token):
            raise RuntimeError(f"LLGuidance refused a token it allowed: {self.matcher.get_error()}")
        return token

    def allowed(self) -> np.ndarray:
        """The tokens the matcher allows now, as a boolean array over the vocabulary."""
        self.matcher.unsafe_compute_mask_ptr(self._bitmask.ctypes.data, self._bitmask.nbytes)
        if self.matcher.is_error():
            raise RuntimeError(f"LLGuidance stopped: {self.matcher.get_error()}")
        allowed = np.unpackbits(self._bitmask.view(np.uint8), bitorder="little", count=self._n_vocab).view(bool)
        if not allowed.any():
            raise RuntimeError("LLGuidance allows no token here")
        return allowed


class GuidanceCheck:
    """A sampler with llama-cpp-python's `sample(ctx, idx)` interface: draw first, let the matcher check the token.

    `redraw_safe` (the chain keeps no history: no penalties, no mirostat, no logits processor) lets both draws use
    llama.cpp's own `llama_sampler_sample`, which builds the candidates in C as free sampling does, and which also
    tells the chain about a rejected token: harmless for such a chain. Otherwise the draws go through a candidate
    array built here (`grammar_sampling.Candidates`), and the chain hears only the final token.
    """

    def __init__(self, llm: Any, chain: Any, grammar: GuidanceGrammar, redraw_safe: bool) -> None:
        import llama_cpp

        from edge_agent.backends.grammar_sampling import Candidates

        self._lib = llama_cpp
        self._chain = chain  # llama-cpp-python's LlamaSampler (frees itself)
        self._n_vocab = int(llm.n_vocab())
        self.check = TokenCheck(grammar.start(), self._n_vocab)
        self._candidates = None if redraw_safe else Candidates(self._n_vocab)

    def sample(self, ctx: Any, idx: int) -> int:
        """The next token: the chain's draw when the matcher takes it, else a draw from the allowed tokens."""
        # the context's own logits row: masking it in place is safe, the next decode overwrites it
        logits = np.ctypeslib.as_array(self._lib.llama_get_logits_ith(ctx.ctx, idx), shape=(self._n_vocab,))
        token = self.check.choose(logits, lambda: self._draw(ctx, idx, logits))
        if self._candidates is not None:
            self._lib.llama_sampler_accept(self._chain.sampler, token)
        return token

    def _draw(self, ctx: Any, idx: int, logits: np.ndarray) -> int:
        if self._candidates is None:
            return int(self._lib.llama_sampler_sample(self._chain.sampler, ctx.ctx, idx))
        return self._candidates.draw(logits, self._chain.sampler)
