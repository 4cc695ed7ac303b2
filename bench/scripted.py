"""A scripted agent whose skill is known: it answers real benchmark items right with a configured probability.

For fleet benchmarks (`edge-agent bench fleet`): a fleet of scripted agents with distinct skills shows
whether routing and voting find the best agent, which a fleet of equal or unknown models cannot show.

How it answers:

* It loads the benchmark items (the GSM8K sample, MedQA and BBH of `edge-agent bench data`, or files given
  in `item_files`) and bins them by difficulty (bench.data.difficulty, P20/P80: easy / medium / hard).
* It recognises the item in the prompt it receives: the item whose whitespace-normalised question text occurs
  in the last user message (the longest such question, so one question inside another is not mistaken; the
  BBH task name tells apart variants that share a question).
* It is right with probability `skill[benchmark][difficulty]` (a number applies to every difficulty; the
  key "*" is the default for other benchmarks), else it gives a plausible wrong answer: a near number for
  GSM8K, another option for MedQA and BBH, the opposite for yes/no and true/false. Wrong answers are drawn
  from a short per-item list of decoys shared by every scripted agent, the first decoy with probability
  `agreement`, so wrong answers of different agents sometimes agree, as real models' mistakes do.
* The draws are deterministic: each comes from a generator seeded with (seed, item id, how many times this
  backend was asked that item), so a fleet run with the same seeds replays the same answers.
* Latency (`latency_ms`, with `jitter` as a relative standard deviation) is slept; completion tokens are
  `completion_tokens`, prompt tokens the prompt's word count.
* `degrade_after` / `degraded_factor`: after that many answered items, or once the file `degrade_file` exists,
  every skill is multiplied by the factor (a board that starts failing mid-stream, for Exp2 on the fabric).

A prompt with no known item gets an honest "unknown" answer. These agents are scripted: their accuracy says
nothing about any language model; it tests the fabric's routing and voting against a known truth.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.backends.base import (
    BackendUnavailable,
    ChatMessage,
    Generation,
    GenerationOptions,
    last_user_message,
)
from shared.constraints import example_output

DEFAULT_BENCHMARKS = ("gsm8k", "medqa", "bbh")
DIFFICULTIES = ("easy", "medium", "hard")
_SPACE = re.compile(r"\s+")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
_BBH_OPTION = re.compile(r"^\(([A-R])\)$")
_OPPOSITES = {
    "true": "False",
    "false": "True",
    "yes": "No",
    "no": "Yes",
    "valid": "invalid",
    "invalid": "valid",
    "plausible": "implausible",
    "implausible": "plausible",
}

SkillTable = Mapping[str, float | Mapping[str, float]]


def normalise(text: str) -> str:
    """Lower case with every run of whitespace as one space: the form questions are matched in."""
    return _SPACE.sub(" ", text).strip().lower()


def decoys(benchmark: str, gold: str, question: str, extra: Mapping[str, Any]) -> list[str]:
    """Plausible wrong answers for an item, most tempting first (never the gold answer)."""
    gold = gold.strip()
    candidates: list[str] = []
    if benchmark == "medqa":
        candidates = [letter for letter in extra.get("options", {}) if letter != gold]
    elif _NUMBER.match(gold.replace(",", "")):
        value = float(gold.replace(",", ""))
        whole = value.is_integer()
        for changed in (value + 1, value - 1, value * 2, value / 2, value + 10, value * 10):
            text = str(int(changed)) if whole and float(changed).is_integer() else f"{changed:g}"
            candidates.append(text)
    elif _BBH_OPTION.match(gold):
        letters = sorted(set(re.findall(r"\(([A-R])\)", question)) - {gold[1]})
        candidates = [f"({letter})" for letter in letters]
    elif gold.lower() in _OPPOSITES:
        candidates = [_OPPOSITES[gold.lower()]]
    else:
        words = gold.split()
        candidates = [" ".join(reversed(words)), gold[:-1], gold + " )"] if words else []
    unique = [c for c in dict.fromkeys(candidates) if c and c.strip().lower() != gold.lower()]
    return unique or [f"not {gold}"]


class ScriptedBackend:
    """A backend that answers known benchmark items with a configured skill (see the module docstring)."""

    supports_chat_template = True
    device = "cpu"
    constraint_kinds = ("json_schema", "regex", "choice")

    def __init__(
        self,
        skill: SkillTable | None = None,
        seed: int = 0,
        benchmarks: Sequence[str] = DEFAULT_BENCHMARKS,
        cache_dir: str | None = None,
        item_files: Mapping[str, str] | None = None,
        latency_ms: float = 0.0,
        jitter: float = 0.0,
        completion_tokens: int = 64,
        agreement: float = 0.6,
        degrade_after: int | None = None,
        degraded_factor: float = 1.0,
        degrade_file: str | None = None,
        model: str = "scripted",
    ) -> None:
        if latency_ms < 0 or jitter < 0 or completion_tokens < 1:
            raise ValueError("latency_ms and jitter must be >= 0 and completion_tokens >= 1")
        if not 0.0 <= agreement <= 1.0 or not 0.0 <= degraded_factor <= 1.0:
            raise ValueError("agreement and degraded_factor must be in [0, 1]")
        if degrade_after is not None and degrade_after < 0:
            raise ValueError(f"degrade_after must be >= 0, got {degrade_after}")
        self.name = "scripted"
        self.model = model
        self.seed = int(seed)
        self.skill = _check_skill(skill or {"*": 0.5})
        self.latency_ms = float(latency_ms)
        self.jitter = float(jitter)
        self.completion_tokens = int(completion_tokens)
        self.agreement = float(agreement)
        self.degrade_after = degrade_after
        self.degraded_factor = float(degraded_factor)
        self.degrade_file = Path(degrade_file) if degrade_file else None
        self.items = _load_items(tuple(benchmarks), cache_dir, item_files or {})
        groups: dict[str, list[Any]] = {}
        for item in self.items:
            groups.setdefault(normalise(item.question), []).append(item)
        self._by_question = sorted(groups.items(), key=lambda pair: -len(pair[0]))
        self._asked: Counter[str] = Counter()
        self._answered = 0
        self._lock = threading.Lock()
        self._closed = False

    def probability(self, benchmark: str, difficulty: str | None) -> float:
        """The configured chance of a right answer on an item of `benchmark` and `difficulty`."""
        entry = self.skill.get(benchmark, self.skill.get("*", 0.0))
        value = entry if isinstance(entry, float | int) else entry.get(difficulty or "medium", entry.get("*", 0.0))
        degraded = (self.degrade_after is not None and self._answered >= self.degrade_after) or (
            self.degrade_file is not None and self.degrade_file.exists()
        )
        return float(value) * (self.degraded_factor if degraded else 1.0)

    def recognise(self, prompt: str) -> Any | None:
        """The loaded item whose question occurs in `prompt` (the longest one), or None.

        Items sharing a question (BBH's three-, five- and seven-object variants) are told apart by the task
        name the prompt carries; without one the first is taken.
        """
        text = normalise(prompt)
        for question, items in self._by_question:
            if question and question in text:
                named = [item for item in items if _task_words(item) and _task_words(item) in text]
                return named[0] if named else items[0]
        return None

    def answer(self, item: Any) -> tuple[str, bool]:
        """This backend's next answer to `item` and whether it is right (moves the per-item draw counter)."""
        with self._lock:
            attempt = self._asked[item.item_id]
            self._asked[item.item_id] += 1
            probability = self.probability(item.benchmark, item.difficulty)
            self._answered += 1
        rng = np.random.default_rng([self.seed, _digest(item.item_id), attempt])
        if rng.random() < probability:
            return item.gold, True
        wrong = decoys(item.benchmark, item.gold, item.question, item.extra)
        if len(wrong) == 1 or rng.random() < self.agreement:
            return wrong[0], False
        return wrong[1 + int(rng.integers(len(wrong) - 1))], False

    def generate(self, messages: list[ChatMessage], options: GenerationOptions) -> Generation:
        """Answer the item in the last user message after the configured latency."""
        if self._closed:
            raise BackendUnavailable("the scripted backend was closed")
        started = time.perf_counter()
        prompt = last_user_message(messages)
        item = self.recognise(prompt)
        if item is None:
            text = "I do not recognise this question.\nFinal answer: unknown"
            delay_rng = np.random.default_rng([self.seed, _digest(prompt)])
        else:
            answer, _ = self.answer(item)
            text = f"Scripted agent ({self.model}) answering {item.item_id}.\nFinal answer: {answer}"
            delay_rng = np.random.default_rng([self.seed, _digest(item.item_id), self._asked[item.item_id], 1])
        if options.constraint is not None:  # valid by construction: its answer when it fits, else a valid one
            task = prompt.rsplit("Task: ", 1)[-1].strip()
            preferred = text.rsplit("Final answer: ", 1)[-1]
            text = example_output(options.constraint, preferred=preferred, fill=task)
        if self.latency_ms:
            time.sleep(max(0.0, self.latency_ms * (1.0 + self.jitter * float(delay_rng.standard_normal()))) / 1000)
        return Generation(
            text=text,
            prompt_tokens=sum(len(message["content"].split()) for message in messages),
            completion_tokens=min(self.completion_tokens, options.max_tokens),
            latency_s=time.perf_counter() - started,
            backend=self.name,
            model=self.model,
        )

    def close(self) -> None:
        """Mark the backend closed; later calls raise ``BackendUnavailable``."""
        self._closed = True


def _task_words(item: Any) -> str:
    return normalise(str(item.extra.get("task", "")).replace("_", " "))


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _check_skill(skill: SkillTable) -> dict[str, float | dict[str, float]]:
    checked: dict[str, float | dict[str, float]] = {}
    for benchmark, entry in skill.items():
        values = {"*": entry} if isinstance(entry, float | int) else dict(entry)
        for key, value in values.items():
            if key != "*" and key not in DIFFICULTIES:
                raise ValueError(f"skill[{benchmark!r}]: unknown difficulty {key!r}; use {', '.join(DIFFICULTIES)}")
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"skill[{benchmark!r}][{key!r}] must be a probability, got {value}")
        checked[benchmark] = (
            float(entry) if isinstance(entry, float | int) else {k: float(v) for k, v in values.items()}
        )
    return checked


def _load_items(benchmarks: tuple[str, ...], cache_dir: str | None, item_files: Mapping[str, str]) -> list[Any]:
    """The items of `benchmarks` with difficulty bins (item_files override the data cache per benchmark)."""
    from bench.data.difficulty import with_difficulty
    from bench.data.fetch import DEFAULT_CACHE
    from bench.data.loaders import load_benchmark

    cache = Path(cache_dir).expanduser() if cache_dir else DEFAULT_CACHE.expanduser()
    items: list[Any] = []
    for benchmark in benchmarks:
        path = Path(item_files[benchmark]) if benchmark in item_files else None
        try:
            loaded = load_benchmark(benchmark, cache, path)
        except (FileNotFoundError, KeyError) as error:
            raise BackendUnavailable(f"scripted backend: {error}") from None
        items.extend(with_difficulty(loaded))
    if not items:
        raise BackendUnavailable("scripted backend: no benchmark items loaded")
    return items
