"""Which items a run asks, in which phase: load, score difficulty, build the stream, slice into phases."""

from __future__ import annotations

from bench.data.bbh_generator import generate_bbh
from bench.data.difficulty import with_difficulty
from bench.data.items import BenchItem
from bench.data.loaders import load_benchmark
from bench.data.stream import build_stream
from bench.runner.config import PHASES, Phase, RunConfig


def load_items(config: RunConfig) -> list[BenchItem]:
    """Every item of the configured benchmarks (plus generated BBH items), with difficulty, in file order."""
    items: list[BenchItem] = []
    for benchmark in config.benchmarks:
        items.extend(load_benchmark(benchmark, config.data_dir.expanduser(), config.data_files.get(benchmark)))
    if config.generated_bbh:
        items.extend(generate_bbh(config.generated_bbh, config.seed))
    return with_difficulty(items)


def order_items(items: list[BenchItem], config: RunConfig) -> list[BenchItem]:
    """The stream when ratios are given (seeded, easy:hard split), else the items in file order."""
    if config.ratios is None:
        return items
    size = config.stream_size or config.cold_start + config.pretrain + (config.test or 0)
    return build_stream(items, size, config.ratios, config.easy_fraction, config.seed)


def split_phases(items: list[BenchItem], config: RunConfig) -> dict[Phase, list[BenchItem]]:
    """Consecutive slices: cold-start, pretrain, then test (all the rest when `config.test` is None)."""
    sizes: dict[Phase, int | None] = {"cold-start": config.cold_start, "pretrain": config.pretrain, "test": config.test}
    phases: dict[Phase, list[BenchItem]] = {}
    start = 0
    for phase in PHASES:
        size = sizes[phase]
        end = len(items) if size is None else min(len(items), start + size)
        phases[phase] = items[start:end]
        start = end
    return phases


def select(config: RunConfig) -> dict[Phase, list[BenchItem]]:
    return split_phases(order_items(load_items(config), config), config)
