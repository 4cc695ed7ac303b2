"""The seeded stream: ratios, easy:hard split, determinism."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from bench.data.items import BenchItem
from bench.data.stream import StreamError, build_stream, split_counts


def pool() -> list[BenchItem]:
    items = []
    for benchmark in ("gsm8k", "medqa"):
        for label in ("easy", "medium", "hard"):
            for index in range(10):
                items.append(BenchItem(f"{benchmark}-{label}-{index}", benchmark, "q", "1", difficulty=label))
    return items


@pytest.mark.parametrize(
    ("total", "ratios", "expected"),
    [
        (10, {"a": 1, "b": 1}, {"a": 5, "b": 5}),
        (10, {"a": 2, "b": 1}, {"a": 7, "b": 3}),
        (3, {"a": 1, "b": 1, "c": 1}, {"a": 1, "b": 1, "c": 1}),
        (1, {"b": 1, "a": 1}, {"a": 1, "b": 0}),
        (7, {"a": 0, "b": 1}, {"a": 0, "b": 7}),
    ],
)
def test_split_counts(total: int, ratios: dict[str, float], expected: dict[str, int]) -> None:
    assert split_counts(total, ratios) == expected


def test_split_counts_rejects_bad_ratios() -> None:
    with pytest.raises(StreamError):
        split_counts(5, {"a": 0})
    with pytest.raises(StreamError):
        split_counts(5, {"a": -1, "b": 2})


def test_stream_follows_ratios_and_the_easy_hard_split() -> None:
    stream = build_stream(pool(), 12, {"gsm8k": 2, "medqa": 1}, easy_fraction=0.25, seed=1)
    assert Counter(item.benchmark for item in stream) == {"gsm8k": 8, "medqa": 4}
    assert Counter((item.benchmark, item.difficulty) for item in stream) == {
        ("gsm8k", "easy"): 2,
        ("gsm8k", "hard"): 6,
        ("medqa", "easy"): 1,
        ("medqa", "hard"): 3,
    }
    assert len({item.item_id for item in stream}) == 12


def test_stream_is_deterministic_and_independent_of_input_order() -> None:
    items = pool()
    first = build_stream(items, 10, {"gsm8k": 1, "medqa": 1}, 0.5, seed=7)
    shuffled = list(items)
    random.Random(3).shuffle(shuffled)
    again = build_stream(shuffled, 10, {"gsm8k": 1, "medqa": 1}, 0.5, seed=7)
    other = build_stream(items, 10, {"gsm8k": 1, "medqa": 1}, 0.5, seed=8)
    assert [i.item_id for i in first] == [i.item_id for i in again]
    assert [i.item_id for i in first] != [i.item_id for i in other]


def test_stream_refuses_what_it_cannot_build() -> None:
    with pytest.raises(StreamError, match="only 10 available"):
        build_stream(pool(), 30, {"gsm8k": 1}, 0.5, seed=0)
    with pytest.raises(StreamError, match="difficulty bin"):
        build_stream([BenchItem("x", "gsm8k", "q", "1")], 1, {"gsm8k": 1}, 0.5, seed=0)
    with pytest.raises(StreamError):
        build_stream(pool(), 2, {"gsm8k": 1}, 1.5, seed=0)
