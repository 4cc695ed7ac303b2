"""`edge-agent demo`: the whole system in one command, on this machine.

An embedded amqtt broker on a free loopback port, one node hosting three agents on the bundled SmolLM2 with
distinct personas (planner, math, writer), one router, one question: prints the trace as it happens and the
voted answer, then stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from edge_agent.cli.common import run_async
from edge_agent.cli.main import package_version
from edge_agent.cli.submit import print_answer, print_event
from shared.messages import TaskEvent

DEFAULT_QUESTION = (
    "A shop sells pens at 3 dollars each. Tom buys 7 pens and pays with a 50 dollar note. "
    "First work out what the pens cost, then how much change he gets."
)
"""The shop question, asked in two parts as a user would: a question with parts is what planning is for, and
SmolLM2 (135M) plans it with steps about the pens and the change, where the one-sentence question mostly gets
steps of numbers that the on-topic judge rejects (the task then runs as one step)."""
PERSONAS = ("planner", "math", "writer")


@click.command()
@click.argument("question", default=DEFAULT_QUESTION)
@click.option("--backend", default="auto", show_default=True, help="auto (llama.cpp/MLX), llamacpp, mlx or echo.")
@click.option("--model", default="default", show_default=True, help="Model of the three agents.")
@click.option("--plan-k", type=int, default=2, show_default=True, help="Planners asked to decompose the question.")
@click.option("--cot-count", type=int, default=3, show_default=True, help="Parallel runs voted per subtask.")
@click.option("--max-tokens", type=int, default=160, show_default=True, help="Generation limit per run.")
@click.option("--timeout", "timeout_s", type=float, default=300.0, show_default=True)
@click.option(
    "--answer-type",
    type=click.Choice(["number", "short_text", "none"]),
    help="Each run reasons, then answers in this form; votes compare values [number for the default question].",
)
def demo(
    question: str,
    backend: str,
    model: str,
    plan_k: int,
    cot_count: int,
    max_tokens: int,
    timeout_s: float,
    answer_type: str | None,
) -> None:
    """Run broker + three agents + router locally and answer QUESTION with planning and CoT voting."""
    if answer_type is None:
        answer_type = "number" if question == DEFAULT_QUESTION else "none"
    run_async(_demo(question, backend, model, plan_k, cot_count, max_tokens, timeout_s, answer_type))


async def _demo(
    question: str,
    backend: str,
    model: str,
    plan_k: int,
    cot_count: int,
    max_tokens: int,
    timeout_s: float,
    answer_type: str = "none",
) -> None:
    from broker.embedded import EmbeddedBroker, EmbeddedBrokerConfig
    from edge_agent.runtime.assembly import build_workers, node_settings
    from edge_agent.runtime.node import EdgeNode
    from router.service import hosted_router
    from shared.client import FabricTaskClient
    from shared.config import AgentConfig, ConnectionSettings, NodeConfig, RouterSettings
    from shared.constraints import answer_type_constraint

    answer = None if answer_type == "none" else answer_type_constraint(answer_type)

    state_dir = Path(tempfile.mkdtemp(prefix="symphony-demo-"))
    async with EmbeddedBroker(EmbeddedBrokerConfig(port=0)) as broker:
        click.echo(f"1/4 embedded amqtt broker on {broker.url}")
        connection = ConnectionSettings(fabric="demo", brokers=(broker.url,))
        agents = tuple(
            AgentConfig(agent_id=f"demo-{name}", preset=name, backend=backend, model=model, max_tokens=max_tokens)
            for name in PERSONAS
        )
        config = NodeConfig(node_id="demo-node", connection=connection, agents=agents, state_dir=state_dir)
        click.echo("2/4 loading three agents (planner, math, writer) ...")
        workers = await build_workers(config)
        node = EdgeNode(node_settings(config, package_version()), workers)
        await node.start()
        for worker in workers:
            speed = f"{worker.tokens_per_second} tokens/s" if worker.tokens_per_second else "no warm-up"
            click.echo(f"    {worker.profile.agent_id}: {worker.backend.name} ({speed}) {worker.profile.capabilities}")
        try:
            async with hosted_router(connection, RouterSettings(router_id="demo-router"), state_dir) as router:
                click.echo(f"3/4 router {router.router_id} up; waiting for the beacons ...")
                await _wait_for_agents(router, len(workers))
                click.echo(f"4/4 submitting: {question}\n")
                planned: list[dict[str, Any]] = []

                def on_event(event: TaskEvent) -> None:
                    print_event(event)
                    if event.event == "planned":
                        planned.append(event.data)

                async with FabricTaskClient(connection) as client:
                    result = await client.submit(
                        question,
                        plan_k=plan_k,
                        cot_count=cot_count,
                        max_tokens=max_tokens,
                        deadline_s=timeout_s,
                        on_event=on_event,
                        answer=answer,
                    )
                print_answer(result)
                answers = [subtask.answer for subtask in result.subtasks]
                for line in planning_report(planned[0] if planned else {}, model, answers):
                    click.echo(line)
        finally:
            await node.stop()
    click.echo("\nstopped broker, agents and router cleanly")


async def _wait_for_agents(router: object, count: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(router.live_agents()) < count and time.monotonic() < deadline:  # type: ignore[attr-defined]
        await asyncio.sleep(0.05)


def planning_report(planned: Mapping[str, Any], model: str, answers: Sequence[str] = ()) -> list[str]:
    """What planning did, in words: the plan that ran, step by step with each step's voted answer (`answers`, in
    the plan's order), and its planner; or, when no plan was usable, what the planners wrote and why it was not
    used (the task then ran as one step: the question itself)."""
    if not planned:
        return ["", "planning: no trace of it"]
    if planned.get("skipped"):
        return ["", f"planning: skipped ({planned.get('reason')}); the question ran as one step"]
    constrained = set(planned.get("constrained") or ())
    if not planned.get("fallback"):
        chosen, usable = planned.get("chosen"), len(planned.get("candidates") or ())
        lines = ["", f"planning: the plan of {chosen}{_how(chosen, constrained)} ran ({usable} usable plan(s)):"]
        for number, step in enumerate(planned.get("plan") or (), 1):
            lines.append(f"  {number}. {step}")
            if number <= len(answers):
                lines.append(f"     -> {' '.join(answers[number - 1].split())[:120]}")
        return lines
    lines = ["", "planning: no plan was usable, so the question ran as one step. The planners wrote:"]
    for rejected in planned.get("rejected") or ():
        planner, steps = rejected.get("planner"), rejected.get("steps") or []
        lines.append(f"  {planner}{_how(planner, constrained)}: {steps if steps else '(no steps)'}")
        lines.append(f"    not used: {rejected.get('why')}")
    small = " (SmolLM2, 135M parameters)" if model == "default" else ""
    lines.append(f"  The model{small} did not write a plan about this question; a larger model plans better.")
    return lines


def _how(planner: object, constrained: set[str]) -> str:
    return " (decoded under the plan schema)" if planner in constrained else ""
