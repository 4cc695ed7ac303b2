"""`edge-agent bench`: benchmarks and the seed's simulated experiments.

Each subcommand parses its options into the experiment's config and calls the experiment's `run`; the logic
lives in `bench.experiments`, imported inside the subcommand so `edge-agent --help` stays light.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


@click.group()
def bench() -> None:
    """Run benchmarks and the Symphony experiments (CSV, JSON and plots under runs/bench/)."""


def experiment_options(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options every simulated experiment takes."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option("--seeds", default=5, show_default=True, type=click.IntRange(min=1), help="Seeds to run."),
            click.option("--tasks", default=1000, show_default=True, type=click.IntRange(min=1), help="Tasks/seed."),
            click.option(
                "--out",
                type=click.Path(file_okay=False, path_type=Path),
                default=Path("runs/bench") / name,
                show_default=True,
                help="Output folder.",
            ),
            click.option("--drift", is_flag=True, help="The seed's drift from the midpoint (A worse, B better)."),
            click.option("--fallback", is_flag=True, help="Retry a failed task on agent A (costs A's price)."),
            click.option(
                "--screening",
                type=click.Choice(["match", "score"]),
                default="match",
                show_default=True,
                help="Top-L by match (the seed's simulations) or 0.5 match + 0.35 prior + 0.15 stability.",
            ),
            click.option("--seed", "base_seed", default=123, show_default=True, help="First seed."),
            click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON."),
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@bench.command()
@experiment_options("exp1")
def exp1(out: Path, as_json: bool, **options: Any) -> None:
    """Exp1, efficiency and cost: always_A, static_rule, random, the seed's LinUCB and ours."""
    from bench.experiments import exp1 as experiment

    _run(experiment.run, _config(experiment.Exp1Config, options), out, as_json)


@bench.command()
@experiment_options("exp2")
def exp2(out: Path, as_json: bool, **options: Any) -> None:
    """Exp2, robustness: shocks A_unavailable and A_degraded at the midpoint, recovery and deadlocks."""
    from bench.experiments import exp2 as experiment

    _run(experiment.run, _config(experiment.Exp2Config, options), out, as_json)


@bench.command()
@experiment_options("exp3")
def exp3(out: Path, as_json: bool, **options: Any) -> None:
    """Exp3, system optimisation: heterogeneous latency and load bursts; latency, cost and load balance."""
    from bench.experiments import exp3 as experiment

    _run(experiment.run, _config(experiment.Exp3Config, options), out, as_json)


def _config(config_class: Any, options: dict[str, Any]) -> Any:
    """Validate the options into the experiment's config; a bad value is a usage error (exit code 2)."""
    from pydantic import ValidationError

    options = dict(options)
    options["n_tasks"] = options.pop("tasks")
    try:
        return config_class(**options)
    except ValidationError as error:
        raise click.UsageError(str(error)) from None


def _run(run: Callable[..., Any], config: Any, out: Path, as_json: bool) -> None:
    """Run with a progress bar on stderr, then print the table (or JSON) and the files written."""
    from bench.experiments.output import format_table

    with click.progressbar(length=config.episode_count, label="episodes", file=sys.stderr) as bar:
        result = run(config, out, bar.update)
    files = [str(path) for path in result.files]
    if as_json:
        payload = {"experiment": result.name, "config": config.model_dump(), "summary": result.summary, "files": files}
        click.echo(json.dumps(_finite(payload), indent=2))
        return
    click.echo(f"{result.name}: {config.seeds} seeds x {config.n_tasks} tasks")
    click.echo(format_table(result.summary, result.columns))
    click.echo("\nwrote:")
    for path in files:
        click.echo(f"  {path}")


def _finite(value: Any) -> Any:
    """NaN is not JSON: turn it into null, recursively."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


# --- micro-benchmarks: figures and ratios against the goals, `--json` for machines ------------------------


def _report(result: dict[str, Any], print_summary: Callable[[dict[str, Any]], None], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        print_summary(result)


@bench.command()
@click.option("--tasks", default=300, show_default=True, type=click.IntRange(min=10), help="Tasks one at a time.")
@click.option("--clients", default=4, show_default=True, type=click.IntRange(min=1), help="Clients for tasks/s.")
@click.option("--broker", "brokers", multiple=True, type=click.Choice(["mosquitto", "amqtt"]), help="Default: both.")
@click.option(
    "--trace",
    type=click.Choice(["full", "summary"]),
    default="full",
    show_default=True,
    help="Trace events per task: every step, or the final one only (nobody follows).",
)
@click.option("--buffered-reads", is_flag=True, help="Router, agents and client read the socket buffered.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def fabric(tasks: int, clients: int, brokers: tuple[str, ...], trace: str, buffered_reads: bool, as_json: bool) -> None:
    """Routing overhead per task (echo agents) next to a bare paho relay of the same 4 hops."""
    from bench import fabric_overhead

    result = fabric_overhead.measure(tasks, clients, brokers or ("mosquitto", "amqtt"), trace, buffered_reads)
    _report(result, fabric_overhead.print_summary, as_json)


@bench.command()
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="GGUF (default: SmolLM2).")
@click.option("--max-tokens", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--threads", type=click.IntRange(min=1), help="llama.cpp threads (default: cores - 1).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def backend(model: Path | None, max_tokens: int, repeats: int, threads: int | None, as_json: bool) -> None:
    """Tokens/s through an agent (RunRequest -> RunResult) against raw llama-cpp-python, as a ratio."""
    from bench import agent_throughput
    from edge_agent.models import default_model_path

    result = agent_throughput.measure(model or default_model_path(), max_tokens, repeats, threads)
    _report(result, agent_throughput.print_summary, as_json)


@bench.command()
@click.option("--delay", default=0.5, show_default=True, type=float, help="Seconds each echo call takes.")
@click.option("--repeats", default=5, show_default=True, type=click.IntRange(min=1), help="Tasks per k.")
@click.option("--broker", "broker_kind", default="mosquitto", type=click.Choice(["mosquitto", "amqtt"]))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def vote(delay: float, repeats: int, broker_kind: str, as_json: bool) -> None:
    """Wall time of a k-way CoT vote (k = 1, 3, 5) over fixed-delay echo agents."""
    from bench import vote_parallelism

    _report(vote_parallelism.measure(delay, repeats, broker_kind), vote_parallelism.print_summary, as_json)


@bench.command()
@click.option(
    "--nodes", "node_counts", multiple=True, type=click.IntRange(min=1), help="Fleet sizes: --nodes 10 100 ..."
)
@click.argument("more_nodes", nargs=-1, type=click.IntRange(min=1))
@click.option("--tasks", default=100, show_default=True, type=click.IntRange(min=10), help="Tasks per fleet size.")
@click.option("--idle", default=5.0, show_default=True, type=float, help="Seconds of state ingest measured.")
@click.option("--ingest-nodes", default=10_000, show_default=True, type=click.IntRange(min=0), help="0: skip.")
@click.option("--routers", default="1,2,4", show_default=True, help="Router counts for tasks/s ('' to skip).")
@click.option("--clients", default=8, show_default=True, type=click.IntRange(min=1), help="Clients for tasks/s.")
@click.option("--buffered-reads", is_flag=True, help="Routers and clients read the socket buffered.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def scale(
    node_counts: tuple[int, ...],
    more_nodes: tuple[int, ...],
    tasks: int,
    idle: float,
    ingest_nodes: int,
    routers: str,
    clients: int,
    buffered_reads: bool,
    as_json: bool,
) -> None:
    """Router CPU per task and p50/p95 against fleet size (emulated fleet), state ingest, RSS, 1/2/4 routers."""
    from bench import scale as experiment

    nodes = [*node_counts, *more_nodes] or [10, 100, 1000, 5000]
    try:
        counts = [int(value) for value in routers.split(",") if value.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{routers!r} is not a comma-separated list of numbers", param_hint="--routers"
        ) from None
    if any(count < 1 for count in counts):
        raise click.BadParameter("router counts must be at least 1", param_hint="--routers")
    result = experiment.measure(nodes, tasks, idle, ingest_nodes, counts, clients, buffered_reads)
    _report(result, experiment.print_summary, as_json)


@bench.command()
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def router(as_json: bool) -> None:
    """One routing decision (Top-L screening + LinUCB select + update) for 16 and 64 agents."""
    from bench import routing_decision

    _report(routing_decision.measure(), routing_decision.print_summary, as_json)


def _attach_fabric_benchmarks() -> None:
    """`bench run` and `bench data` (benchmarks over the real fabric) live with their runner in bench.runner."""
    from bench.runner.cli import data_command, run_command

    bench.add_command(run_command, "run")
    bench.add_command(data_command, "data")


_attach_fabric_benchmarks()
