"""Disjoint LinUCB: one ridge-regression arm per agent, so the router learns which agent is good.

For arm a with n_a observed contexts x and rewards r:

    A_a     = lambda * I + sum x x^T           (the policy keeps A_a^-1, updated by Sherman-Morrison)
    b_a     = sum r x
    theta_a = A_a^-1 b_a
    beta_a  = alpha * sqrt(d * ln(1 + n_a / lambda) + 2 * ln(1 / delta)) + sqrt(lambda) * S
    UCB_a   = theta_a . x + beta_a * sqrt(x^T A_a^-1 x)

The width is the seed's, with t counted per arm because each arm's confidence set only sees its own data.
Arms are created lazily with A = lambda * I. All arms live in stacked arrays (row 0 is an untouched
prototype that unknown arms read from), so selecting among 64 arms is a few vectorised numpy calls.

Randomness comes only from the `numpy.random.Generator` passed to `select`; it is drawn only to break ties.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from shared.files import write_atomic

FEATURE_NAMES: tuple[str, ...] = (
    "bias",
    "match",
    "prior",
    "stability",
    "idle",
    "responsiveness",
    "reliability",
    "difficulty",
)
"""The context vector built by `context_features`, in order; its length is the default dimension."""

DIFFICULTY_LEVELS: dict[str, float] = {"simple": 0.25, "easy": 0.25, "medium": 0.5, "hard": 0.75, "expert": 1.0}
LATENCY_CAP_MS = 2000.0
TIE_TOLERANCE = 1e-9
_STATE_FORMAT = "symphony-edge/linucb/v1"


class LinUCBConfig(BaseModel):
    """Immutable, validated LinUCB settings (defaults are the seed's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alpha: float = Field(default=1.0, ge=0.0)
    lam: float = Field(default=1.0, gt=0.0)
    delta: float = Field(default=0.05, gt=0.0, lt=1.0)
    S: float = Field(default=1.0, ge=0.0)
    dimension: int = Field(default=len(FEATURE_NAMES), ge=1)
    frozen: bool = False


@dataclass(frozen=True)
class Selection:
    """The chosen arm and, per candidate arm, its UCB, its estimated reward and its exploration width."""

    arm: str
    ucb: dict[str, float]
    mean: dict[str, float]
    width: dict[str, float]


def context_features(
    match: float,
    prior: float,
    stability: float,
    load: float,
    latency_ms: float,
    available: bool,
    reliability: float,
    difficulty: float | str | None = None,
) -> np.ndarray:
    """Build the d = 8 context vector of FEATURE_NAMES for one candidate agent.

    Load becomes idleness (1 - load), latency becomes responsiveness (1 - min(latency, 2000) / 2000),
    both zeroed when the agent is unavailable. Difficulty is a number in [0, 1] or a label of
    DIFFICULTY_LEVELS; unknown or missing means 0.5.
    """
    live = 1.0 if available else 0.0
    idle = live * (1.0 - min(max(load, 0.0), 1.0))
    responsiveness = live * (1.0 - min(max(latency_ms, 0.0), LATENCY_CAP_MS) / LATENCY_CAP_MS)
    values = [1.0, match, prior, stability, idle, responsiveness, reliability, difficulty_value(difficulty)]
    return np.array(values, dtype=float)


def difficulty_value(difficulty: float | str | None) -> float:
    """Map a difficulty label or number onto [0, 1] (0.5 when unknown)."""
    if difficulty is None:
        return 0.5
    if isinstance(difficulty, str):
        return DIFFICULTY_LEVELS.get(difficulty.strip().lower(), 0.5)
    return min(max(float(difficulty), 0.0), 1.0)


class LinUCBPolicy:
    """Per-agent (disjoint) LinUCB with select / update / save / load and a frozen evaluation mode."""

    def __init__(self, config: LinUCBConfig | None = None) -> None:
        self.config = config or LinUCBConfig()
        dimension = self.config.dimension
        self._index: dict[str, int] = {}
        # Row 0 of every array is the prototype arm that unseen arms read from; it never learns.
        self._a_inverse = np.eye(dimension)[None, :, :] / self.config.lam
        self._b = np.zeros((1, dimension))
        self._theta = np.zeros((1, dimension))
        self._beta = np.array([self._width_factor(0)])
        self._counts: list[int] = [0]

    @property
    def arms(self) -> list[str]:
        """The arms seen so far, in the order they were first updated or loaded."""
        return list(self._index)

    def count(self, arm: str) -> int:
        """How many rewards the arm has learned from."""
        row = self._index.get(arm, 0)
        return self._counts[row]

    def theta(self, arm: str) -> np.ndarray:
        """The arm's ridge estimate A^-1 b (zeros for an unseen arm)."""
        row = self._index.get(arm, 0)
        return self._a_inverse[row] @ self._b[row]

    def beta(self, arm: str) -> float:
        """The arm's exploration width factor beta (see the module docstring)."""
        return float(self._beta[self._index.get(arm, 0)])

    def select(self, contexts: Mapping[str, np.ndarray], rng: np.random.Generator) -> Selection:
        """Pick the arm with the highest UCB among `contexts` (arm -> context vector).

        Arms within TIE_TOLERANCE of the best are tied; only then is `rng` drawn to choose among them.
        """
        if not contexts:
            raise ValueError("select needs at least one candidate arm")
        names = list(contexts)
        rows = np.array([self._index.get(name, 0) for name in names])
        features = np.array([contexts[name] for name in names], dtype=float)
        if features.ndim != 2:
            raise ValueError("every context must be a vector of the same length")
        self._check_shape(features.shape[1])
        projected = np.matmul(self._a_inverse[rows], features[:, :, None])[:, :, 0]
        means = _rowwise_dot(self._theta[rows], features)
        widths = self._beta[rows] * np.sqrt(np.maximum(_rowwise_dot(features, projected), 0.0))
        ucb = (means + widths).tolist()
        return Selection(
            arm=names[_argmax_with_ties(ucb, rng)],
            ucb=dict(zip(names, ucb, strict=True)),
            mean=dict(zip(names, means.tolist(), strict=True)),
            width=dict(zip(names, widths.tolist(), strict=True)),
        )

    def update(self, arm: str, x: np.ndarray, reward: float) -> None:
        """Learn one (context, reward) observation for `arm`; does nothing when the policy is frozen."""
        if self.config.frozen:
            return
        features = np.asarray(x, dtype=float)
        self._check_shape(features.shape[0])
        row = self._row(arm)
        a_inverse = self._a_inverse[row]
        projected = a_inverse @ features
        a_inverse -= np.outer(projected, projected) / (1.0 + features @ projected)
        self._b[row] += reward * features
        self._theta[row] = a_inverse @ self._b[row]
        self._counts[row] += 1
        self._beta[row] = self._width_factor(self._counts[row])

    def freeze(self) -> LinUCBPolicy:
        """Return a frozen copy (same state, `update` becomes a no-op); this policy is unchanged."""
        frozen = LinUCBPolicy(self.config.model_copy(update={"frozen": True}))
        frozen._index = dict(self._index)
        frozen._a_inverse = self._a_inverse.copy()
        frozen._b = self._b.copy()
        frozen._theta = self._theta.copy()
        frozen._beta = self._beta.copy()
        frozen._counts = list(self._counts)
        return frozen

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready snapshot: config and, per arm, A^-1, b and the observation count."""
        arms = {
            name: {
                "a_inverse": self._a_inverse[row].tolist(),
                "b": self._b[row].tolist(),
                "count": self._counts[row],
            }
            for name, row in self._index.items()
        }
        return {"format": _STATE_FORMAT, "config": self.config.model_dump(), "arms": arms}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LinUCBPolicy:
        """Rebuild a policy from `to_dict` output; raises ValueError on a foreign or malformed snapshot."""
        if data.get("format") != _STATE_FORMAT:
            raise ValueError(f"not a LinUCB snapshot (format {data.get('format')!r})")
        policy = cls(LinUCBConfig.model_validate(data["config"]))
        for name, arm in data["arms"].items():
            row = policy._row(name)
            policy._a_inverse[row] = np.asarray(arm["a_inverse"], dtype=float)
            policy._b[row] = np.asarray(arm["b"], dtype=float)
            policy._theta[row] = policy._a_inverse[row] @ policy._b[row]
            policy._counts[row] = int(arm["count"])
            policy._beta[row] = policy._width_factor(int(arm["count"]))
        return policy

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the snapshot as JSON atomically (shared.files.write_atomic)."""
        write_atomic(Path(path), json.dumps(self.to_dict()).encode())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LinUCBPolicy:
        """Read a policy written by `save`."""
        with open(path, encoding="utf-8") as stream:
            return cls.from_dict(json.load(stream))

    def _row(self, arm: str) -> int:
        """The arm's row in the stacked arrays, appending a fresh lambda*I arm when it is new."""
        row = self._index.get(arm)
        if row is not None:
            return row
        row = len(self._counts)
        if row == self._a_inverse.shape[0]:
            self._grow()
        self._a_inverse[row] = self._a_inverse[0]
        self._b[row] = 0.0
        self._theta[row] = 0.0
        self._beta[row] = self._beta[0]
        self._index[arm] = row
        self._counts.append(0)
        return row

    def _grow(self) -> None:
        """Double the capacity of the stacked arrays so adding arms stays cheap."""
        self._a_inverse = np.concatenate([self._a_inverse, np.empty_like(self._a_inverse)])
        self._b = np.concatenate([self._b, np.empty_like(self._b)])
        self._theta = np.concatenate([self._theta, np.empty_like(self._theta)])
        self._beta = np.concatenate([self._beta, np.empty_like(self._beta)])

    def _width_factor(self, count: int) -> float:
        """beta for an arm that has learned from `count` rewards."""
        config = self.config
        radius = config.dimension * math.log1p(count / config.lam) + 2.0 * math.log(1.0 / config.delta)
        return config.alpha * math.sqrt(radius) + math.sqrt(config.lam) * config.S

    def _check_shape(self, dimension: int) -> None:
        """Reject context vectors whose length is not the configured dimension."""
        if dimension != self.config.dimension:
            raise ValueError(f"context has {dimension} features, the policy expects {self.config.dimension}")


def _rowwise_dot(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Dot product of matching rows (np.vecdot is the fast path on numpy 2; einsum otherwise)."""
    if _VECDOT is not None:
        return _VECDOT(left, right)
    return np.einsum("kd,kd->k", left, right)


_VECDOT = getattr(np, "vecdot", None)


def _argmax_with_ties(values: list[float], rng: np.random.Generator) -> int:
    """Index of the largest value; values within TIE_TOLERANCE of it are tied and `rng` picks one."""
    best = max(values)
    floor = best - TIE_TOLERANCE * max(1.0, abs(best))
    tied = [index for index, value in enumerate(values) if value >= floor]
    if len(tied) == 1:
        return tied[0]
    return tied[int(rng.integers(len(tied)))]
