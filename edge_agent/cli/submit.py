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
) -> None:
    """Submit QUESTION and print the voted answer; exits 1 with a clear message on timeout or error."""
    config = fabric_config(config_path, brokers, fabric)
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
