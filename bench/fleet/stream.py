"""The fleet's item stream: the same number of items from each benchmark, drawn with a seed, interleaved."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.data.difficulty import with_difficulty
from bench.data.items import BenchItem
from bench.data.loaders import load_benchmark


def load_items(benchmarks: Sequence[str], cache_dir: Path, item_files: Mapping[str, str]) -> list[BenchItem]:
    """Every item of `benchmarks` with its difficulty bin (item_files override the data cache)."""
    items: list[BenchItem] = []
    for benchmark in benchmarks:
        path = Path(item_files[benchmark]) if benchmark in item_files else None
        items.extend(with_difficulty(load_benchmark(benchmark, cache_dir, path)))
    return items


def build_stream(items: Sequence[BenchItem], size: int, seed: int) -> list[BenchItem]:
    """`size` items, round-robin over the benchmarks, each benchmark's items shuffled by `seed` (a benchmark
    with fewer items than its share starts its shuffled list again)."""
    if size < 1:
        raise ValueError(f"the stream needs at least one item, got {size}")
    rng = random.Random(seed)
    pools: dict[str, list[BenchItem]] = {}
    for item in sorted(items, key=lambda i: i.item_id):
        pools.setdefault(item.benchmark, []).append(item)
    if not pools:
        raise ValueError("no items to build a stream from")
    orders = {name: rng.sample(pool, len(pool)) for name, pool in sorted(pools.items())}
    names = sorted(orders)
    return [orders[names[i % len(names)]][(i // len(names)) % len(orders[names[i % len(names)]])] for i in range(size)]
