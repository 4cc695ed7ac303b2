"""The seeded benchmark stream: benchmark ratios, an easy:hard split, a shuffle. Pure and deterministic.

`build_stream` draws `size` items: each benchmark gets its share of `ratios` (largest remainder, ties by
benchmark name), and within a benchmark `easy_fraction` of its items come from the easy bin and the rest from
the hard bin (medium items are left out, as the seed's simple/hard split). The same items, arguments and seed
always give the same stream, whatever order the items arrive in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

from bench.data.items import BenchItem
from shared.errors import SymphonyError


class StreamError(SymphonyError, ValueError):
    """The stream cannot be built as asked (unknown benchmark, too few items in a bin, bad ratio)."""


def split_counts(total: int, ratios: Mapping[str, float]) -> dict[str, int]:
    """Split `total` by `ratios` with the largest-remainder method; the counts add up to `total`."""
    if total < 0 or not ratios or any(weight < 0 for weight in ratios.values()):
        raise StreamError(f"need a non-negative total and non-negative ratios, got {total} and {dict(ratios)}")
    weight_sum = sum(ratios.values())
    if weight_sum <= 0:
        raise StreamError("at least one ratio must be positive")
    exact = {name: total * weight / weight_sum for name, weight in sorted(ratios.items())}
    counts = {name: math.floor(value) for name, value in exact.items()}
    left = total - sum(counts.values())
    for name in sorted(exact, key=lambda key: (-(exact[key] - counts[key]), key))[:left]:
        counts[name] += 1
    return counts


def build_stream(
    items: Sequence[BenchItem], size: int, ratios: Mapping[str, float], easy_fraction: float, seed: int
) -> list[BenchItem]:
    """`size` items drawn as the module docstring says, shuffled by `seed`."""
    if not 0.0 <= easy_fraction <= 1.0:
        raise StreamError(f"easy_fraction must be in [0, 1], got {easy_fraction}")
    if any(item.difficulty is None for item in items):
        raise StreamError("every item needs a difficulty bin first (bench.data.difficulty.with_difficulty)")
    rng = random.Random(seed)
    chosen: list[BenchItem] = []
    for benchmark, count in split_counts(size, ratios).items():
        easy_count = round(count * easy_fraction)
        for label, wanted in (("easy", easy_count), ("hard", count - easy_count)):
            pool = sorted((i for i in items if i.benchmark == benchmark and i.difficulty == label), key=_key)
            if len(pool) < wanted:
                raise StreamError(f"{benchmark}: {wanted} {label} items wanted, only {len(pool)} available")
            chosen.extend(rng.sample(pool, wanted))
    rng.shuffle(chosen)
    return chosen


def _key(item: BenchItem) -> str:
    return item.item_id
