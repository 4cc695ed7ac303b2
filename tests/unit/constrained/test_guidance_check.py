"""Check-first sampling over LLGuidance (`edge_agent.backends.guidance`), on a toy byte-level vocabulary: a draw the
grammar allows is kept as is; a refused one masks the logits and is drawn again; whatever the draws, the output
satisfies the constraint."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("llguidance", reason="llguidance is not installed")

from llguidance import LLMatcher, LLTokenizer, TokenizerWrapper

from edge_agent.backends.grammar_sampling import stateless_chain
from edge_agent.backends.guidance import JSON_OPTIONS, TokenCheck, bounded_schema, grammar_text
from shared.constraints import ConstraintError, violation
from shared.messages import OutputConstraint

EOS = 0
WORDS = (b"Hello", b"42", b'{"', b'": ')
HELLO, FORTY_TWO = 257, 258


class ToyVocabulary:
    """End of text, the 256 bytes (token 1 + byte), then a few words; text is tokenized byte by byte."""

    eos_token_id = EOS
    bos_token_id = None
    tokens = [b"<eos>", *(bytes([value]) for value in range(256)), *WORDS]
    special_token_ids = [EOS]

    def __call__(self, text: bytes) -> list[int]:
        return [1 + value for value in text]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return LLTokenizer(TokenizerWrapper(ToyVocabulary()))


def check(tokenizer: Any, constraint: OutputConstraint) -> TokenCheck:
    matcher = LLMatcher(tokenizer, grammar_text(constraint), log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    return TokenCheck(matcher, tokenizer.vocab_size)


def greedy(logits: np.ndarray) -> Any:
    return lambda: int(np.argmax(logits))


def uniform(logits: np.ndarray, rng: np.random.Generator) -> Any:
    """A draw of any token whose logit is not -inf, all alike: mostly refused before the mask."""
    return lambda: int(rng.choice(np.flatnonzero(np.isfinite(logits))))


DIGITS = OutputConstraint(type="regex", pattern="[0-9]{1,3}")


def test_an_allowed_draw_is_kept_and_the_logits_are_untouched(tokenizer: Any) -> None:
    token_check = check(tokenizer, DIGITS)
    logits = np.zeros(tokenizer.vocab_size, dtype=np.float32)
    logits[FORTY_TWO] = 5.0
    assert token_check.choose(logits, greedy(logits)) == FORTY_TWO
    assert token_check.rejections == 0 and np.isfinite(logits).all()


def test_a_refused_draw_masks_the_vocabulary_and_draws_again(tokenizer: Any) -> None:
    token_check = check(tokenizer, DIGITS)
    logits = np.zeros(tokenizer.vocab_size, dtype=np.float32)
    logits[HELLO], logits[FORTY_TWO], logits[1 + ord("7")] = 9.0, 5.0, 3.0
    draws: list[int] = []

    def draw() -> int:
        draws.append(int(np.argmax(logits)))
        return draws[-1]

    assert token_check.choose(logits, draw) == FORTY_TWO
    assert draws == [HELLO, FORTY_TWO] and token_check.rejections == 1
    allowed = np.isfinite(logits)
    assert allowed[FORTY_TWO] and allowed[1 + ord("7")] and not allowed[HELLO] and not allowed[EOS]
    assert logits[1 + ord("7")] == 3.0  # an allowed logit keeps its value
    # "42" taken: one digit more at most, then only the end
    logits[:] = 0.0
    logits[1 + ord("x")], logits[1 + ord("5")] = 9.0, 1.0
    assert token_check.choose(logits, greedy(logits)) == 1 + ord("5")
    logits[:] = 0.0
    logits[HELLO] = 9.0
    assert token_check.choose(logits, greedy(logits)) == EOS


@pytest.mark.parametrize(
    "constraint",
    [
        DIGITS,
        OutputConstraint(type="choice", choices=("yes", "no", 'say "maybe"')),
        OutputConstraint(
            type="json_schema",
            json_schema={
                "type": "object",
                "properties": {
                    "n": {"type": "integer", "minimum": 0, "maximum": 99},
                    "unit": {"enum": ["kg", "lb"]},
                    "ok": {"type": "boolean"},
                },
                "required": ["n", "unit", "ok"],
                "additionalProperties": False,
            },
        ),
    ],
    ids=["regex", "choice", "json_schema"],
)
def test_random_draws_always_give_valid_output(tokenizer: Any, constraint: OutputConstraint) -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        token_check, tokens = check(tokenizer, constraint), []
        while not tokens or tokens[-1] != EOS:
            logits = rng.normal(size=tokenizer.vocab_size).astype(np.float32) * 4
            tokens.append(token_check.choose(logits, uniform(logits, rng)))
            assert len(tokens) < 80, tokenizer.decode_bytes(tokens)
        text = tokenizer.decode_bytes(tokens[:-1]).decode("utf-8")
        assert violation(text, constraint) is None, text


def test_json_allows_one_space_between_tokens_and_no_more(tokenizer: Any) -> None:
    """A bounded schema stays bounded: free whitespace would let a model pad a plan past its token budget, and
    plan_token_bound counts one optional space per gap, as llama.cpp's converter allows."""
    schema = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer"}}}}
    for text in (b'{"a":[1,2]}', b'{"a": [1, 2]}', b'{ "a" : [ 1 , 2 ] }'):
        matcher = LLMatcher(tokenizer, grammar_text(OutputConstraint(type="json_schema", json_schema=schema)))
        assert matcher.try_consume_tokens(ToyVocabulary()(text)) == len(text)
    for padded in (b'{  "', b'{\n"'):
        matcher = LLMatcher(tokenizer, grammar_text(OutputConstraint(type="json_schema", json_schema=schema)))
        assert matcher.try_consume_tokens(ToyVocabulary()(padded)) < len(padded)
    assert JSON_OPTIONS["whitespace_pattern"] == "[ ]?"


def test_what_no_grammar_expresses_is_refused() -> None:
    with pytest.raises(ConstraintError):
        grammar_text(OutputConstraint(type="regex", pattern=r"(a)\1"))


@pytest.mark.parametrize(
    ("arguments", "safe"),
    [
        ({"temp": 0.7, "repeat_penalty": 1.0, "frequency_penalty": 0.0, "presence_penalty": 0.0}, True),
        ({"temp": 0.7}, True),
        ({"repeat_penalty": 1.1}, False),
        ({"presence_penalty": 0.5}, False),
        ({"mirostat_mode": 2}, False),
        ({"logits_processor": [lambda ids, scores: scores]}, False),
    ],
)
def test_a_rejected_draw_may_reach_only_a_chain_without_history(arguments: dict[str, Any], safe: bool) -> None:
    assert stateless_chain((), arguments) is safe


def test_objects_without_a_word_on_other_properties_are_closed() -> None:
    """As llama-cpp-python's converter reads them: SmolLM2 otherwise adds properties until `max_tokens` cuts it."""
    schema = {
        "type": "object",
        "properties": {
            "city": {"$ref": "#/$defs/City"},
            "tags": {"type": "array", "items": {"type": "object", "properties": {"t": {"type": "string"}}}},
            "properties": {"type": "object", "properties": {}, "additionalProperties": True},
        },
        "$defs": {
            "City": {"anyOf": [{"type": "object", "properties": {"name": {"type": "string"}}}, {"type": "null"}]}
        },
    }
    closed = bounded_schema(schema)
    assert closed["additionalProperties"] is False
    assert closed["properties"]["tags"]["items"]["additionalProperties"] is False
    assert closed["$defs"]["City"]["anyOf"][0]["additionalProperties"] is False
    assert closed["properties"]["properties"]["additionalProperties"] is True  # said explicitly: kept
    assert "additionalProperties" not in closed["properties"]  # the map of names is not a schema
    assert "additionalProperties" not in schema  # the caller's schema is left alone


def test_numbers_without_a_bound_get_sixteen_digits() -> None:
    """SmolLM2 at temperature 0 wrote `"population": 1111...` until `max_tokens`; llama.cpp's converter stops at 16."""
    bounded = bounded_schema({"type": "object", "properties": {"n": {"type": "integer"}, "x": {"minimum": 0}}})
    assert bounded["properties"]["n"]["maximum"] == 10**16 - 1 == -bounded["properties"]["n"]["minimum"]
    assert bounded["properties"]["x"] == {"minimum": 0}
    kept = bounded_schema({"type": "number", "exclusiveMinimum": 0, "maximum": 5})
    assert kept == {"type": "number", "exclusiveMinimum": 0, "maximum": 5}


def test_the_longest_plan_fits_the_plan_budget(tokenizer: Any) -> None:
    """The router's plan budget counts llama.cpp's optional spaces; LLGuidance's JSON has fewer, so it fits, in
    the widest script (a step of three-byte characters) as in ASCII."""
    from router.constrained import CONSTRAINED_PLAN_MAX_TOKENS, MAX_PLAN_STEPS, MAX_STEP_CHARS, plan_constraint

    for character in ("x", "中"):
        matcher = LLMatcher(tokenizer, grammar_text(plan_constraint(MAX_PLAN_STEPS)), log_level=0)
        step = '"' + character * MAX_STEP_CHARS + '"'
        longest = ('{"subtasks": [' + ", ".join([step] * MAX_PLAN_STEPS) + "]}").encode()
        assert matcher.try_consume_tokens(ToyVocabulary()(longest)) == len(longest)
        assert matcher.is_stopped() and len(longest) + 1 <= CONSTRAINED_PLAN_MAX_TOKENS  # one byte a token at most
