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
            click.option(
                "--results-md",
                type=click.Path(dir_okay=False, path_type=Path),
                help="Also write the table and figures as this experiment's section of a Markdown report.",
            ),
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


buffered_reads_option = click.option(
    "--buffered-reads/--no-buffered-reads",
    default=True,
    show_default=True,
    help="The fabric's components read the socket buffered, or per packet header byte as paho does.",
)


@bench.command()
@experiment_options("exp1")
def exp1(out: Path, as_json: bool, results_md: Path | None, **options: Any) -> None:
    """Exp1, efficiency and cost: always_A, static_rule, random, the seed's LinUCB and ours."""
    from bench.experiments import exp1 as experiment

    _run(experiment.run, _config(experiment.Exp1Config, options), out, as_json, results_md, experiment.RESULTS_NOTES)


@bench.command()
@experiment_options("exp2")
def exp2(out: Path, as_json: bool, results_md: Path | None, **options: Any) -> None:
    """Exp2, robustness: shocks A_unavailable and A_degraded at the midpoint, recovery and deadlocks."""
    from bench.experiments import exp2 as experiment

    _run(experiment.run, _config(experiment.Exp2Config, options), out, as_json, results_md, experiment.RESULTS_NOTES)


@bench.command()
@experiment_options("exp3")
def exp3(out: Path, as_json: bool, results_md: Path | None, **options: Any) -> None:
    """Exp3, system optimisation: heterogeneous latency and load bursts; latency, cost and load balance."""
    from bench.experiments import exp3 as experiment

    _run(experiment.run, _config(experiment.Exp3Config, options), out, as_json, results_md, experiment.RESULTS_NOTES)


def _config(config_class: Any, options: dict[str, Any]) -> Any:
    """Validate the options into the experiment's config; a bad value is a usage error (exit code 2)."""
    from pydantic import ValidationError

    options = dict(options)
    options["n_tasks"] = options.pop("tasks")
    try:
        return config_class(**options)
    except ValidationError as error:
        raise click.UsageError(str(error)) from None


def _run(
    run: Callable[..., Any], config: Any, out: Path, as_json: bool, results_md: Path | None = None, notes: str = ""
) -> None:
    """Run with a progress bar on stderr, then print the table (or JSON) and the files written."""
    from bench.experiments.output import format_table, write_results_section

    with click.progressbar(length=config.episode_count, label="episodes", file=sys.stderr) as bar:
        result = run(config, out, bar.update)
    if results_md is not None:
        command = f"edge-agent bench {result.name} --seeds {config.seeds} --tasks {config.n_tasks}"
        write_results_section(results_md, result, command, notes)
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
    default="summary",
    show_default=True,
    help="Trace events per task: every step, or the final one only (nobody follows).",
)
@buffered_reads_option
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
    from model_store import default_model_path

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
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="GGUF (default: SmolLM2).")
@click.option("--repeats", default=20, show_default=True, type=click.IntRange(min=1), help="Questions measured.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1), help="llama.cpp threads.")
@click.option("--broker", "broker_kind", default="mosquitto", type=click.Choice(["mosquitto", "amqtt"]))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def ttft(model: Path | None, repeats: int, threads: int, broker_kind: str, as_json: bool) -> None:
    """Time to first token through the OpenAI gateway against raw llama-cpp-python (goal: raw + 20 ms)."""
    from bench import gateway_ttft
    from model_store import default_model_path

    result = gateway_ttft.measure(model or default_model_path(), repeats, threads, broker_kind)
    _report(result, gateway_ttft.print_summary, as_json)


PLAN_VARIANTS = ("router", "baseline", "four", "short", "form", "few-shot", "shape", "greedy", "few-shot-greedy")


@bench.command()
@click.argument("measure", type=click.Choice(["plans", "answers", "tools", "cost"]))
@click.option("--n", "count", default=50, show_default=True, type=click.IntRange(min=1),
              help="Queries (plans), GSM8K items (answers), requests (tools) or repeats (cost).")  # fmt: skip
@click.option("--ballots", default=3, show_default=True, type=click.IntRange(min=1), help="Runs per item (answers).")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(min=1), help="llama.cpp threads.")
@click.option("--constrained-only", is_flag=True, help="plans: skip free decoding (its figures need no schema).")
@click.option("--variant", type=click.Choice(PLAN_VARIANTS), default="router", show_default=True,
              help="plans: the prompt, plan schema and temperature (bench.constrained.plan_variants).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def constrained(
    measure: str, count: int, ballots: int, threads: int, constrained_only: bool, variant: str, as_json: bool
) -> None:
    """Constrained decoding with SmolLM2: plan validity, answer extraction, tool calls via the gateway, its cost."""
    from bench import constrained as experiment

    result = experiment.run(measure, count, ballots, threads, free_decoding=not constrained_only, variant=variant)
    _report(result, experiment.print_summary, as_json)


@bench.command("early-stop")
@click.option("--tasks", default=5, show_default=True, type=click.IntRange(min=1), help="Voted tasks per setting.")
@click.option("--slow", type=click.Choice(["llamacpp", "echo"]), default="llamacpp", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def early_stop(tasks: int, slow: str, as_json: bool) -> None:
    """Tokens generated per voted task with and without cancelling the runs an early stop leaves behind."""
    from bench import early_stop as experiment

    _report(experiment.measure(tasks, slow), experiment.print_summary, as_json)


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
@buffered_reads_option
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
@click.option("--sites", type=click.IntRange(min=1), help="One configuration of this many sites (with --boards).")
@click.option("--boards", type=click.IntRange(min=1), help="Boards per site of that configuration.")
@click.option("--tasks", default=2000, show_default=True, type=click.IntRange(min=1), help="Tasks per configuration.")
@click.option("--seed", default=1, show_default=True, help="Seed of the world and of the routers.")
@click.option("--quick", is_flag=True, help="The small configurations only (a smoke run).")
@click.option("--modes", default="full,summaries,global,oracle", show_default=True, help="Comma-separated modes.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def sites(sites: int | None, boards: int | None, tasks: int, seed: int, quick: bool, modes: str, as_json: bool) -> None:
    """Many sites in one process: the real routing code over S sites x B boards with WAN links (simulated)."""
    from bench import sites as experiment

    chosen = tuple(mode.strip() for mode in modes.split(",") if mode.strip())
    unknown = sorted(set(chosen) - set(experiment.MODES))
    if unknown or not chosen:
        message = f"modes are {', '.join(experiment.MODES)}, not {unknown or modes!r}"
        raise click.BadParameter(message, param_hint="--modes")
    if (sites is None) != (boards is None):
        raise click.BadParameter("give --sites and --boards together", param_hint="--sites/--boards")
    if sites is not None and boards is not None:
        configurations = [experiment.WorldConfig(sites=sites, boards=boards, tasks=tasks, seed=seed)]
    else:
        configurations = experiment.standard_configurations(tasks, seed, quick)
    _report(experiment.measure(configurations, chosen), experiment.print_summary, as_json)


@bench.command()
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def router(as_json: bool) -> None:
    """One routing decision (Top-L screening + LinUCB select + update) for 16 and 64 agents."""
    from bench import routing_decision

    _report(routing_decision.measure(), routing_decision.print_summary, as_json)


@bench.command()
@click.option("--items", default=60, show_default=True, type=click.IntRange(min=1), help="Items per phase.")
@click.option("--exp2-items", default=60, show_default=True, type=click.IntRange(min=2), help="Items of Exp2.")
@click.option(
    "--kill-at", default=0.5, show_default=True, type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True)
)
@click.option("--seed", default=7, show_default=True, help="Seed of the stream and of the scripted agents.")
@click.option("--kill", default="best", show_default=True, help="Agent Exp2 shocks ('best': the best alone).")
@click.option(
    "--shock",
    type=click.Choice(["kill", "degrade"]),
    default="kill",
    show_default=True,
    help="Exp2: SIGKILL the agent, or degrade it (30 % of its skill; it keeps answering).",
)
@click.option("--exp2-router", type=click.Choice(["linucb", "cost_aware"]), default="linucb", show_default=True)
@click.option("--benchmark", "benchmarks", multiple=True, type=click.Choice(["gsm8k", "medqa", "bbh"]))
@click.option("--item-file", "item_files", multiple=True, help="BENCHMARK=PATH: items from a file, not the cache.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), help="Data cache of `bench data`.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/bench/fleet"),
    show_default=True,
    help="Run folder (records, summary.json, logs).",
)
@click.option("--results-md", type=click.Path(dir_okay=False, path_type=Path), help="Write the report section here.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def fleet(
    items: int,
    exp2_items: int,
    kill_at: float,
    seed: int,
    kill: str,
    shock: str,
    exp2_router: str,
    benchmarks: tuple[str, ...],
    item_files: tuple[str, ...],
    cache_dir: Path | None,
    out: Path,
    results_md: Path | None,
    as_json: bool,
) -> None:
    """Scripted agents of known skill on the real fabric: router, vote, self-consistency, best agent, oracle; Exp2."""
    from bench.data.fetch import DEFAULT_CACHE
    from bench.fleet.report import baseline_verdict, write_section
    from bench.fleet.run import FleetConfig, run

    files = {}
    for entry in item_files:
        name, separator, path = entry.partition("=")
        if not separator or not path:
            raise click.UsageError(f"--item-file takes BENCHMARK=PATH, got {entry!r}")
        files[name] = path
    chosen = benchmarks or tuple(files) or ("gsm8k", "medqa", "bbh")
    try:
        config = FleetConfig(
            out=out,
            items=items,
            exp2_items=exp2_items,
            kill_at=kill_at,
            seed=seed,
            kill=kill,
            shock=shock,
            exp2_router=exp2_router,
            benchmarks=chosen,
            cache_dir=cache_dir or DEFAULT_CACHE,
            item_files=files,
        )
        summary = run(config)
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None
    if results_md is not None:
        write_section(results_md, summary, results_md.parent / "figures" / "fleet")
    if as_json:
        click.echo(json.dumps(_finite(summary), indent=2, default=str))
        return
    click.echo(f"fleet: {summary['items']} items per phase, scripted agents, run folder {out}")
    for name, values in summary["strategies"].items():
        click.echo(f"  {name:<40} accuracy {values['accuracy']:.3f}  cost/correct {values['cost_per_correct']:.4f}")
    click.echo(f"  {baseline_verdict(summary['self_consistency'])}")
    exp2 = summary["exp2"]
    verb = "killed" if exp2["shock"] == "kill" else "degraded"
    click.echo(
        f"  exp2: {verb} {exp2['killed']} at task {exp2['kill_at']}: accuracy {exp2['accuracy_before']:.3f} -> "
        f"{exp2['accuracy_after']:.3f}, rerouted after {exp2['tasks_to_reroute']} task(s)"
    )
    if results_md is not None:
        click.echo(f"wrote {results_md}")


def _attach_fabric_benchmarks() -> None:
    """`bench run` and `bench data` (benchmarks over the real fabric) live with their runner in bench.runner."""
    from bench.runner.cli import data_command, run_command

    bench.add_command(run_command, "run")
    bench.add_command(data_command, "data")


_attach_fabric_benchmarks()


@bench.command()
@click.option("--nodes", default=1000, show_default=True, type=click.IntRange(min=2), help="Emulated fleet size.")
@click.option(
    "--real-nodes", default=30, show_default=True, type=click.IntRange(min=2), help="Real servers (loopback)."
)
@click.option("--model-mb", default=94, show_default=True, type=click.IntRange(min=1), help="Model size (emulated).")
@click.option("--max-uploads", default=4, show_default=True, type=click.IntRange(min=1), help="Uploads per peer.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def rollout(nodes: int, real_nodes: int, model_mb: int, max_uploads: int, as_json: bool) -> None:
    """A model spreading over the LAN from peers: time until every node has it, copies served per peer."""
    import json

    from bench import rollout as measures

    real = measures.real_rollout(real_nodes, max_uploads=max_uploads)
    emulated = measures.emulated_rollout(nodes, model_mb * 1_000_000, max_uploads=max_uploads)
    if as_json:
        click.echo(json.dumps({"real": real.as_dict(), "emulated": emulated.as_dict()}, indent=2))
        return
    click.echo(measures.summary("real servers on loopback", real))
    click.echo(measures.summary("emulated (100 MB/s links, 2 s model load)", emulated))


@bench.command(name="model-change")
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(min=1), help="Nodes whose model changes.")
@click.option("--broker", "brokers", multiple=True, type=click.Choice(["mosquitto", "amqtt"]), help="Default: both.")
@click.option("--backend", type=click.Choice(["echo", "llamacpp"]), default="echo", show_default=True)
@click.option("--clients", default=4, show_default=True, type=click.IntRange(min=1), help="Closed-loop clients.")
@click.option("--before", "before_s", default=15.0, show_default=True, help="Seconds of load before the change.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def model_change(
    nodes: int, brokers: tuple[str, ...], backend: str, clients: int, before_s: float, as_json: bool
) -> None:
    """Change the model of agents on several nodes under load: tasks lost/failed, p95, where models came from."""
    import json

    from bench import model_change as scenario

    for kind in brokers or ("mosquitto", "amqtt"):
        result = scenario.measure(nodes, kind, backend, clients, before_s)
        click.echo(json.dumps(result) if as_json else scenario.summary(result))
