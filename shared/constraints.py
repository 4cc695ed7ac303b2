"""Output constraints (`shared.messages.OutputConstraint`): build them, check output, canonicalise answers, and turn
regular expressions and choices into GBNF grammars.

A task names an *answer type* (`number`, `choice`, `short_text`, `json`) and `answer_type_constraint` makes the
constraint the agents decode under. Engines differ in what they can constrain, so each piece here is pure and
engine-free: llama.cpp takes `to_gbnf` (regex, choice) or its own JSON-schema converter; the echo and scripted
backends take `example_output` (valid by construction); the router and the gateway take `canonical_answer` and
`violation`. Regular expressions are read with Python's own parser (`re._parser`), so what a client writes is what
Python's `re.fullmatch` accepts; features a grammar cannot express (backreferences, lookarounds) are refused with
`ConstraintError`.

Errors: ConstraintError (a ValueError) for a constraint that cannot be built or compiled.
"""

from __future__ import annotations

import json
import re
from typing import Any

from shared.errors import SymphonyError
from shared.messages import OutputConstraint

try:  # Python 3.11+: the parser behind `re`; 3.10 names it sre_parse
    import re._constants as sre_constants
    import re._parser as sre_parse
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants  # type: ignore[no-redef, unused-ignore]
    import sre_parse  # type: ignore[no-redef, unused-ignore]

ANSWER_TYPES = ("number", "choice", "short_text", "json")
NUMBER_PATTERN = r"-?[0-9]{1,15}(\.[0-9]{1,2})?"  # two decimals: a small model otherwise keeps adding digits
SHORT_TEXT_PATTERN = r"[^\n]{1,80}"
MAX_EXAMPLE_DEPTH = 12


class ConstraintError(SymphonyError, ValueError):
    """A constraint that cannot be built, compiled or honoured."""


def answer_type_constraint(
    answer_type: str, choices: tuple[str, ...] = (), schema: dict[str, Any] | None = None
) -> OutputConstraint:
    """The constraint of a named answer type (number, choice, short_text, json); ConstraintError when incomplete."""
    if answer_type == "number":
        return OutputConstraint(type="regex", pattern=NUMBER_PATTERN, name="number")
    if answer_type == "short_text":
        return OutputConstraint(type="regex", pattern=SHORT_TEXT_PATTERN, name="short_text")
    if answer_type == "choice":
        if not choices:
            raise ConstraintError("the answer type 'choice' needs the choices")
        return OutputConstraint(type="choice", choices=tuple(choices), name="choice")
    if answer_type == "json":
        return OutputConstraint(type="json_schema", json_schema=schema or {"type": "object"}, name="json")
    raise ConstraintError(f"unknown answer type {answer_type!r}; choose one of {', '.join(ANSWER_TYPES)}")


def canonical_json(value: Any) -> str:
    """One spelling per JSON value (sorted keys, no spaces), so equal answers compare equal in a vote."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_answer(text: str, constraint: OutputConstraint) -> str | None:
    """The canonical form of an output that satisfies `constraint` (JSON: canonical JSON), else None."""
    stripped = text.strip()
    if constraint.type == "json_schema":
        try:
            return canonical_json(json.loads(stripped))
        except ValueError:
            return None
    if constraint.type == "choice":
        return stripped if stripped in constraint.choices else None
    assert constraint.pattern is not None
    return stripped if re.fullmatch(constraint.pattern, stripped) else None


def violation(text: str, constraint: OutputConstraint) -> str | None:
    """Why `text` does not satisfy `constraint` (None: it does). JSON Schema is checked with `jsonschema`."""
    if canonical_answer(text, constraint) is None:
        if constraint.type == "json_schema":
            return "the output is not valid JSON"
        if constraint.type == "choice":
            return f"the output is not one of {list(constraint.choices)[:10]}"
        return f"the output does not match {constraint.pattern!r}"
    if constraint.type == "json_schema":
        return schema_violation(json.loads(text), constraint.json_schema or {})
    return None


def schema_violation(value: Any, schema: dict[str, Any]) -> str | None:
    """Why `value` does not validate against `schema` (None: it does)."""
    import jsonschema  # a dependency of the gateway extra; imported here only where a schema is checked

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path)
    return f"{where or 'the reply'}: {error.message}"[:500]


def check_schema(schema: Any) -> None:
    """Raise ConstraintError when `schema` is not a JSON Schema (Draft 2020-12)."""
    import jsonschema

    if not isinstance(schema, dict):
        raise ConstraintError("a JSON schema is a JSON object")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.exceptions.SchemaError as error:
        raise ConstraintError(f"not a valid JSON schema: {error.message}"[:500]) from None


# --- GBNF (llama.cpp grammars) ------------------------------------------------------------------------------


def to_gbnf(constraint: OutputConstraint) -> str:
    """A GBNF grammar (llama.cpp) of a regex or choice constraint; ConstraintError when it cannot be expressed."""
    if constraint.type == "choice":
        return "root ::= " + " | ".join(_gbnf_literal(choice) for choice in constraint.choices)
    if constraint.type == "regex":
        assert constraint.pattern is not None
        return f"root ::= {_gbnf_sequence(_parse_regex(constraint.pattern))}"
    raise ConstraintError("JSON schemas are turned into grammars by the engine's own converter")


def _parse_regex(pattern: str) -> Any:
    try:
        return sre_parse.parse(pattern)
    except re.error as error:
        raise ConstraintError(f"invalid regular expression {pattern[:80]!r}: {error}") from None


def _gbnf_literal(text: str) -> str:
    return '"' + "".join(_gbnf_char(ord(char), '"\\') for char in text) + '"'


def _gbnf_char(code: int, special: str) -> str:
    char = chr(code)
    if char in special:
        return "\\" + char
    if 0x20 <= code < 0x7F or (code > 0xA0 and code <= 0xFFFF and char.isprintable()):
        return char
    return f"\\x{code:02X}" if code < 0x100 else (f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}")


def _gbnf_sequence(items: Any) -> str:
    parts = [_gbnf_item(op, value) for op, value in items]
    parts = [part for part in parts if part]
    return " ".join(parts) if parts else '""'


_CATEGORIES = {
    "CATEGORY_DIGIT": (False, "0-9"),
    "CATEGORY_NOT_DIGIT": (True, "0-9"),
    "CATEGORY_WORD": (False, "a-zA-Z0-9_"),
    "CATEGORY_NOT_WORD": (True, "a-zA-Z0-9_"),
    "CATEGORY_SPACE": (False, " \\t\\n\\r\\x0B\\x0C"),
    "CATEGORY_NOT_SPACE": (True, " \\t\\n\\r\\x0B\\x0C"),
}


def _gbnf_item(op: Any, value: Any) -> str:
    name = str(op)
    if name == "LITERAL":
        return _gbnf_literal(chr(value))
    if name == "NOT_LITERAL":
        return f"[^{_gbnf_char(value, _CLASS_SPECIAL)}]"
    if name == "ANY":
        return "[^\\n]"
    if name == "IN":
        return _gbnf_class(value)
    if name == "AT":
        return ""  # anchors: the grammar spans the whole output anyway
    if name == "BRANCH":
        return "(" + " | ".join(_gbnf_sequence(branch) for branch in value[1]) + ")"
    if name == "SUBPATTERN":
        return f"({_gbnf_sequence(value[-1])})"
    if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        return _gbnf_repeat(*value)
    raise ConstraintError(f"regular expressions with {name.lower()} cannot become a grammar")


_CLASS_SPECIAL = "]\\-^["


def _gbnf_class(items: Any) -> str:
    negated, parts = False, []
    for op, value in items:
        name = str(op)
        if name == "NEGATE":
            negated = True
        elif name == "LITERAL":
            parts.append(_gbnf_char(value, _CLASS_SPECIAL))
        elif name == "RANGE":
            parts.append(f"{_gbnf_char(value[0], _CLASS_SPECIAL)}-{_gbnf_char(value[1], _CLASS_SPECIAL)}")
        elif name == "CATEGORY" and str(value) in _CATEGORIES:
            category_negated, body = _CATEGORIES[str(value)]
            if category_negated and (negated or len(items) > 1):
                raise ConstraintError("a negated class inside a character set cannot become a grammar")
            negated = negated or category_negated
            parts.append(body)
        else:
            raise ConstraintError(f"the character set item {name.lower()} cannot become a grammar")
    return f"[{'^' if negated else ''}{''.join(parts)}]"


def _gbnf_repeat(least: int, most: int, items: Any) -> str:
    body = f"({_gbnf_sequence(items)})"
    if most == sre_constants.MAXREPEAT:
        return {0: f"{body}*", 1: f"{body}+"}.get(least, f"{body}{{{least},}}")
    if (least, most) == (0, 1):
        return f"{body}?"
    return f"{body}{{{least}}}" if least == most else f"{body}{{{least},{most}}}"


# --- valid output by construction (echo and scripted backends) ---------------------------------------------


def example_output(constraint: OutputConstraint, preferred: str | None = None, fill: str = "") -> str:
    """An output that satisfies `constraint`: `preferred` when it already does, else a small valid one (JSON
    strings hold `fill` where the schema allows it, so a test double's plan is its task, not filler)."""
    if preferred is not None and violation_free(preferred, constraint):
        return preferred.strip()
    if constraint.type == "choice":
        return constraint.choices[0]
    if constraint.type == "regex":
        assert constraint.pattern is not None
        return _regex_example(_parse_regex(constraint.pattern))
    schema = constraint.json_schema or {}
    return canonical_json(example_instance(schema, schema, fill=fill))


def violation_free(text: str, constraint: OutputConstraint) -> bool:
    """True when `text` satisfies the constraint (schemas checked only when `jsonschema` is installed)."""
    try:
        return violation(text, constraint) is None
    except ImportError:
        return canonical_answer(text, constraint) is not None


def _regex_example(items: Any) -> str:
    out = []
    for op, value in items:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(value))
        elif name in ("ANY", "NOT_LITERAL", "IN"):
            out.append(_class_example(name, value))
        elif name == "BRANCH":
            out.append(_regex_example(value[1][0]))
        elif name == "SUBPATTERN":
            out.append(_regex_example(value[-1]))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            out.append(_regex_example(value[2]) * value[0])
    return "".join(out)


def _class_example(name: str, value: Any) -> str:
    """A character that matches a class (tried from a few common ones)."""
    for candidate in "a0 A_-.x1":
        if _matches_one(name, value, candidate):
            return candidate
    return "a"


def _matches_one(name: str, value: Any, char: str) -> bool:
    if name == "ANY":
        return char != "\n"
    if name == "NOT_LITERAL":
        return ord(char) != value
    negated, hit = False, False
    for op, item in value:
        kind = str(op)
        if kind == "NEGATE":
            negated = True
        elif kind == "LITERAL":
            hit = hit or ord(char) == item
        elif kind == "RANGE":
            hit = hit or item[0] <= ord(char) <= item[1]
        elif kind == "CATEGORY":
            hit = hit or _in_category(str(item), char)
    return hit != negated


def _in_category(category: str, char: str) -> bool:
    tests = {"DIGIT": char.isdigit(), "WORD": char.isalnum() or char == "_", "SPACE": char.isspace()}
    base = category.replace("CATEGORY_", "").replace("NOT_", "")
    return tests.get(base, False) != ("NOT_" in category)


def example_instance(schema: Any, root: dict[str, Any], depth: int = 0, fill: str = "") -> Any:
    """A small instance of a JSON schema: required properties only, minimum lengths, first options."""
    if not isinstance(schema, dict) or depth > MAX_EXAMPLE_DEPTH:
        return None
    if "$ref" in schema:
        return example_instance(_resolve(schema["$ref"], root), root, depth + 1, fill)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example_instance(schema[key][0], root, depth + 1, fill)
    kind = schema.get("type", "object")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    return _typed_example(kind, schema, root, depth, fill)


def _typed_example(kind: str, schema: dict[str, Any], root: dict[str, Any], depth: int, fill: str) -> Any:
    if kind == "object":
        properties = schema.get("properties") or {}
        required = schema.get("required", [])
        return {name: example_instance(properties.get(name, {}), root, depth + 1, fill) for name in required}
    if kind == "array":
        item = example_instance(schema.get("items", {}), root, depth + 1, fill)
        return [item] * int(schema.get("minItems", 0))
    if kind == "string":
        least, most = int(schema.get("minLength", 0)), int(schema.get("maxLength", len(fill)))
        text = fill[:most] + "a" * max(0, least - len(fill[:most]))
        if "pattern" in schema:  # the fill where the pattern takes it (a bad pattern raises ConstraintError)
            example = _regex_example(_parse_regex(schema["pattern"]))
            return text if re.search(schema["pattern"], text) else example
        return text
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    return {"boolean": False, "null": None}.get(kind)


def _resolve(reference: str, root: dict[str, Any]) -> Any:
    """A local `#/...` reference (pydantic writes `#/$defs/Name`); anything else resolves to no constraint."""
    if not reference.startswith("#/"):
        return {}
    node: Any = root
    for part in reference[2:].split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node
