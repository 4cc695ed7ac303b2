"""BBH items generated exactly: boolean_expressions and multistep_arithmetic_two, in BBH's own format.

Both tasks are algorithmic, so fresh items with exact gold answers can be made from a seed (the BBH test
split itself is not on PyPI). Gold answers come from `evaluate`, a tiny evaluator of the generated grammar
(not Python's eval): Python's precedence (not > and > or; * > + -) is the one BBH uses.
"""

from __future__ import annotations

import ast
import random

from bench.data.items import BenchItem

_BOOLEAN_OPERATORS = ("and", "or")


def boolean_expression(rng: random.Random, operands: int = 5) -> str:
    """A BBH-style expression such as ``not ( True ) and ( False or True )`` with `operands` literals."""
    parts = []
    for index in range(operands):
        literal = rng.choice(("True", "False"))
        if rng.random() < 0.3:
            literal = f"not {literal}"
        parts.append(literal)
        if index < operands - 1:
            parts.append(rng.choice(_BOOLEAN_OPERATORS))
    if operands >= 3 and rng.random() < 0.6:
        start = rng.randrange(0, operands - 1) * 2
        parts[start] = f"( {parts[start]}"
        parts[start + 2] = f"{parts[start + 2]} )"
        if rng.random() < 0.4:
            parts[start] = f"not {parts[start]}"
    return " ".join(parts)


def arithmetic_group(rng: random.Random, terms: int = 4) -> str:
    numbers = [rng.randint(-9, 9) for _ in range(terms)]
    operators = [rng.choice("+-*") for _ in range(terms - 1)]
    text = str(numbers[0])
    for operator, number in zip(operators, numbers[1:], strict=True):
        text += f" {operator} {number}"
    return f"({text})"


def arithmetic_expression(rng: random.Random) -> str:
    """A multistep_arithmetic_two expression: ``((a op b op c op d) op (e op f op g op h))``."""
    return f"({arithmetic_group(rng)} {rng.choice('+-*')} {arithmetic_group(rng)})"


def evaluate(expression: str) -> bool | int:
    """Evaluate a generated expression (booleans, integers, not/and/or, + - *) without eval()."""
    return _evaluate(ast.parse(expression, mode="eval").body)


def _evaluate(node: ast.AST) -> bool | int:
    if isinstance(node, ast.Constant) and isinstance(node.value, (bool, int)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _evaluate(node.operand)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -int(_evaluate(node.operand))
    if isinstance(node, ast.BoolOp):
        values = [bool(_evaluate(value)) for value in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult)):
        left, right = int(_evaluate(node.left)), int(_evaluate(node.right))
        if isinstance(node.op, ast.Add):
            return left + right
        return left - right if isinstance(node.op, ast.Sub) else left * right
    raise ValueError(f"unsupported expression element: {ast.dump(node)[:80]}")


def generate_bbh(count: int, seed: int) -> list[BenchItem]:
    """`count` items alternating boolean_expressions and multistep_arithmetic_two, reproducible from `seed`."""
    rng = random.Random(seed)
    items = []
    for index in range(count):
        if index % 2 == 0:
            expression = boolean_expression(rng)
            task, question, gold = "boolean_expressions", f"{expression} is", str(evaluate(expression))
        else:
            expression = arithmetic_expression(rng)
            task, question, gold = "multistep_arithmetic_two", f"{expression} =", str(evaluate(expression))
        items.append(
            BenchItem(
                item_id=f"bbh-{task}-gen{seed}-{index}",
                benchmark="bbh",
                question=question,
                gold=gold,
                extra={"task": task, "source": f"generated (seed {seed})"},
            )
        )
    return items
