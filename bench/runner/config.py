"""RunConfig: everything one benchmark run needs, validated once (the CLI only fills it in)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bench.data.fetch import DEFAULT_CACHE
from bench.data.loaders import LOADERS

Phase = Literal["cold-start", "pretrain", "test"]
PHASES: tuple[Phase, ...] = ("cold-start", "pretrain", "test")
DEFAULT_PERSONAS = ("math", "coder", "retriever")


class RunConfig(BaseModel):
    """One run: which items, which phases and variants, which fabric, where the outputs go.

    Phases take consecutive slices of the item list: `cold_start` items with a fresh selector that learns,
    `pretrain` items that go on learning, then `test` items (None: all the rest) with the selector frozen.
    Each item runs once per variant (a `cot_count`), the variants interleaved so a time budget that cuts
    the run short leaves them with the same items.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    benchmarks: tuple[str, ...] = ("gsm8k",)
    data_dir: Path = DEFAULT_CACHE
    data_files: dict[str, Path] = Field(default_factory=dict)
    generated_bbh: int = Field(default=0, ge=0)
    ratios: dict[str, float] | None = None
    stream_size: int | None = Field(default=None, ge=1)
    easy_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    seed: int = 0
    cold_start: int = Field(default=0, ge=0)
    pretrain: int = Field(default=0, ge=0)
    test: int | None = Field(default=None, ge=0)
    cot_counts: tuple[int, ...] = (3,)
    plan_k: int = Field(default=1, ge=1, le=8)
    top_l: int = Field(default=3, ge=1, le=16)
    max_tokens: int = Field(default=192, ge=1, le=8192)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    deadline_s: float = Field(default=300.0, gt=0.0, le=3600.0)
    exec_timeout_s: float = Field(default=10.0, gt=0.0)
    time_budget_s: float | None = Field(default=None, gt=0.0)
    broker: str | None = None
    fabric: str = "bench"
    backend: str = "auto"
    model: str = "default"
    personas: tuple[str, ...] = DEFAULT_PERSONAS
    threads: int | None = Field(default=None, ge=1)
    out: Path = Path("runs/bench/runner")
    title: str = ""

    @field_validator("benchmarks")
    @classmethod
    def _known_benchmarks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in LOADERS]
        if unknown:
            raise ValueError(f"unknown benchmark(s) {unknown}; known: {', '.join(LOADERS)}")
        return value

    @field_validator("cot_counts")
    @classmethod
    def _valid_variants(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(count < 1 or count > 9 for count in value) or len(set(value)) != len(value):
            raise ValueError("cot counts must be distinct numbers from 1 to 9")
        return value

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(variant_name(count) for count in self.cot_counts)


def variant_name(cot_count: int) -> str:
    return "single" if cot_count == 1 else f"vote{cot_count}"
