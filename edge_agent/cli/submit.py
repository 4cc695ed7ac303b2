"""`edge-agent submit`: ask the fabric a question and print the voted answer with a short trace."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from edge_agent.cli.common import (
    check_reachable,
    fabric_config,
    fabric_options,
    run_async,
)
from shared.errors import TransportError
from shared.messages import TaskAnswer, TaskChunk, TaskEvent


@click.command()
@click.argument("question")
@fabric_options
@click.option("--plan-k", type=int, default=1, show_default=True, help="Planners asked to decompose the task.")
@click.option(
    "--plan-mode",
    type=click.Choice(["decompose", "chains"]),
    default="decompose",
    show_default=True,
    help="decompose: run the voted plan; chains: run every planner's chain and vote on their answers.",
)
@click.option("--difficulty", type=click.Choice(["simple", "hard"]), help="simple skips planning; hard always plans.")
@click.option("--cot-count", type=int, default=3, show_default=True, help="Parallel runs voted per subtask.")
@click.option("--top-l", type=int, default=3, show_default=True, help="Candidates kept by screening.")
@click.option("--max-tokens", type=int, default=256, show_default=True, help="Generation limit per run.")
@click.option("--selection", type=click.Choice(["registry", "bid"]), default="registry", show_default=True)
@click.option("--gold", help="The correct answer, if known (the router learns from it).")
@click.option("--timeout", "timeout_s", type=float, default=120.0, show_default=True, help="Seconds to wait.")
@click.option("--task-id", help="Task id (resending the same id returns the same answer).")
@click.option("--json", "as_json", is_flag=True, help="Print the TaskAnswer as JSON.")
@click.option("--trace/--no-trace", default=True, show_default=True, help="Print trace events as they happen.")
@click.option("--stream", is_flag=True, help="Print the tokens as they arrive (a single run: --cot-count 1).")
@click.option("--agent", "agent_id", help="Run on this agent only (a direct run, no vote).")
@click.option(
    "--schema",
    "schema_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A JSON Schema file: the answer is JSON valid against it (with --answer-type json: after free reasoning).",
)
@click.option(
    "--answer-type",
    type=click.Choice(["number", "choice", "short_text", "json"]),
    help="Each run reasons freely, then answers in this form (constrained decoding); votes compare the values.",
)
@click.option("--choices", help="The options of --answer-type choice, comma-separated (e.g. A,B,C,D).")
def submit(
    question: str,
    config_path: Path | None,
    brokers: tuple[str, ...],
    fabric: str | None,
    plan_k: int,
    plan_mode: str,
    difficulty: str | None,
    cot_count: int,
    top_l: int,
    max_tokens: int,
    selection: str,
    gold: str | None,
    timeout_s: float,
    task_id: str | None,
    as_json: bool,
    trace: bool,
    stream: bool,
    agent_id: str | None,
    schema_path: Path | None,
    answer_type: str | None,
    choices: str | None,
) -> None:
    """Submit QUESTION and print the voted answer; exits 1 with a clear message on timeout or error."""
    config = fabric_config(config_path, brokers, fabric)
    constraints = constraint_options(schema_path, answer_type, choices)
    options = {
        "plan_k": plan_k,
        "plan_mode": plan_mode,
        "difficulty": difficulty,
        "cot_count": cot_count,
        "top_l": top_l,
        "max_tokens": max_tokens,
        "selection": selection,
        "gold_answer": gold,
        "deadline_s": timeout_s,
        "stream": stream,
        "agent_id": agent_id,
        **constraints,
    }
    if agent_id is not None:
        options.update(cot_count=1, plan_k=1)
    try:
        answer = run_async(_submit(config.connection, question, task_id, timeout_s, options, trace and not as_json))
    except ValueError as error:  # invalid options (pydantic) are the user's mistake
        raise click.UsageError(str(error)) from None
    if as_json:
        click.echo(answer.model_dump_json(indent=2))
    else:
        print_answer(answer)


def constraint_options(schema_path: Path | None, answer_type: str | None, choices: str | None) -> dict[str, Any]:
    """The TaskOptions `output` / `answer` of --schema, --answer-type and --choices (UsageError when invalid)."""
    from shared.constraints import ConstraintError, answer_type_constraint, check_schema
    from shared.messages import OutputConstraint

    schema = None
    if schema_path is not None:
        try:
            schema = json.loads(schema_path.read_text())
            check_schema(schema)
        except (OSError, ValueError) as error:  # unreadable, not JSON, or not a JSON Schema (ConstraintError)
            raise click.UsageError(f"--schema {schema_path}: {error}") from None
    if choices is not None and answer_type != "choice":
        raise click.UsageError("--choices goes with --answer-type choice")
    options: dict[str, Any] = {}
    if schema is not None and schema_path is not None and answer_type != "json":
        options["output"] = OutputConstraint(type="json_schema", json_schema=schema, name=schema_path.stem[:64])
    if answer_type is not None:
        listed = tuple(choice.strip() for choice in (choices or "").split(",") if choice.strip())
        try:
            options["answer"] = answer_type_constraint(answer_type, listed, schema)
        except ConstraintError as error:
            raise click.UsageError(f"--answer-type {answer_type}: {error}") from None
    return options


async def _submit(
    connection: Any, question: str, task_id: str | None, timeout_s: float, options: dict[str, Any], trace: bool
) -> TaskAnswer:
    from shared.client import FabricTaskClient

    check_reachable(connection)
    async with FabricTaskClient(connection) as client:
        if options.get("stream"):
            return await _stream(client, client.request(question, task_id, **options), timeout_s + 5)
        return await client.submit(
            question, task_id=task_id, timeout_s=timeout_s + 5, on_event=print_event if trace else None, **options
        )


async def _stream(client: Any, request: Any, timeout_s: float) -> TaskAnswer:
    """Tokens to stdout as they come (progress of a vote to stderr); the answer at the end."""
    tokens = False
    async for message in client.stream(request, timeout_s):
        if isinstance(message, TaskChunk):
            if message.phase == "token":
                tokens = True
                click.echo(message.text, nl=False)
            else:
                click.echo(f"  [{'progress':>12}] {message.text}", err=True)
            sys.stdout.flush()
            continue
        if tokens:
            click.echo("")
        answer: TaskAnswer = message
        return answer
    raise TransportError("the stream ended without an answer")


def print_event(event: TaskEvent) -> None:
    """One line per trace event, compact."""
    data = {key: value for key, value in event.data.items() if value not in (None, [], {})}
    details = json.dumps(data, default=str)
    if len(details) > 160:
        details = details[:157] + "..."
    click.echo(f"  [{event.event:>12}] {details}", err=True)


def print_answer(answer: TaskAnswer) -> None:
    click.echo("")
    if len(answer.plan) > 1:
        click.echo("plan:")
        for index, step in enumerate(answer.plan, start=1):
            click.echo(f"  {index}. {step}")
    for subtask in answer.subtasks:
        click.echo(f"subtask {subtask.index + 1}: {subtask.text[:100]}")
        for ballot in subtask.ballots:
            click.echo(
                f"  {ballot.agent_id:<24} {ballot.latency_ms:>8.0f} ms  w={ballot.weight:.2f}  {ballot.answer[:60]!r}"
            )
    click.echo(f"\nanswer: {answer.answer}")
    click.echo(f"(task {answer.task_id}, router {answer.router_id}, {answer.elapsed_ms:.0f} ms)")
    sys.stdout.flush()
