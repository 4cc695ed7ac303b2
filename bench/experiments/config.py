"""The settings the three experiments share (validated, immutable)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bench.experiments.episode import EpisodeSettings
from bench.experiments.simulation import Screening


class ExperimentConfig(BaseModel):
    """Settings shared by the three experiments."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seeds: int = Field(default=5, ge=1)
    base_seed: int = 123
    n_tasks: int = Field(default=1000, ge=1)
    p_hard: float = Field(default=0.223, ge=0.0, le=1.0)
    top_l: int = Field(default=3, ge=1)
    screening: Screening = "match"
    fallback: bool = False
    drift: bool = False

    def seed_list(self) -> list[int]:
        return [self.base_seed + offset for offset in range(self.seeds)]

    def settings(self) -> EpisodeSettings:
        """The episode settings of this config; drift, when on, starts halfway (t = 500 of 1000 as the seed)."""
        return EpisodeSettings(
            n_tasks=self.n_tasks,
            p_hard=self.p_hard,
            top_l=self.top_l,
            screening=self.screening,
            fallback=self.fallback,
            drift_at=self.n_tasks // 2 if self.drift else None,
        )
