"""The question each benchmark sends to the fabric, and the capability tags it asks for.

Prompts are zero-shot and short: the agents' system prompt already asks for a closing ``Final answer:``
line, so a prompt only says what form the answer takes.
"""

from __future__ import annotations

from bench.data.items import BenchItem

REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "gsm8k": ("mathematical-reasoning",),
    "amc": ("mathematical-reasoning",),
    "humaneval": ("code-implementation",),
    "medqa": ("fact-checking",),
    "bbh": ("analysis",),
}


def gsm8k_prompt(item: BenchItem) -> str:
    return f"{item.question}\nSolve the problem step by step. The final answer is a single number."


def humaneval_prompt(item: BenchItem) -> str:
    return (
        "Complete the following Python function. Reply with the complete function, including its signature "
        "and the imports it needs, in one ```python code block.\n\n"
        f"```python\n{item.question.rstrip()}\n```"
    )


def medqa_prompt(item: BenchItem) -> str:
    options = "\n".join(f"{letter}. {text}" for letter, text in item.extra["options"].items())
    letters = ", ".join(item.extra["options"])
    return f"{item.question}\n\nOptions:\n{options}\n\nAnswer with the letter of the correct option ({letters})."


def bbh_prompt(item: BenchItem) -> str:
    task = str(item.extra.get("task", "")).replace("_", " ")
    return (
        f"Task: {task}.\nQ: {item.question}\n"
        "Give the answer exactly in the form the question expects (for options, the letter in parentheses)."
    )


def prompt_for(item: BenchItem) -> str:
    """The query of `item` as the fabric receives it."""
    builders = {"gsm8k": gsm8k_prompt, "amc": gsm8k_prompt, "humaneval": humaneval_prompt, "medqa": medqa_prompt}
    return builders.get(item.benchmark, bbh_prompt)(item)


def gold_for_router(item: BenchItem) -> str | None:
    """The gold answer the router may learn from: none for HumanEval, whose correctness is a test run."""
    return None if item.benchmark == "humaneval" else item.gold
