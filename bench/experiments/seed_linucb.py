"""The seed's LinUCB (Symphony 2.0 `core/linucb_selector.py`), kept as the baseline the router is compared with.

One model shared by all agents (so it cannot tell two agents with the same context apart):

    A = lambda I + sum x x^T,  b = sum r x,  theta = A^-1 b       (A^-1 kept by Sherman-Morrison)
    beta_t = alpha * sqrt(d ln(1 + max(1, t) / lambda) + 2 ln(1 / delta)) + sqrt(lambda) S
    UCB(x) = theta . x + beta_t sqrt(x^T A^-1 x)

with t the number of updates so far, and the context (d = 6)

    x = [1, match, load, latency / 2000, reputation, available]      scaled to unit length when its norm > 1

Selection keeps the first candidate among equal UCBs (the seed compared with a strict `>`), so it draws no
randomness. This is an independent numpy re-implementation; router.linucb is our per-agent version.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SEED_DIMENSION = 6


def seed_context(
    match: float, load: float, latency_ms: float, reputation: float, available: bool, latency_scale_ms: float = 2000.0
) -> np.ndarray:
    """The seed's `build_x`: six clipped features, normalised to unit length when longer than 1."""
    x = np.array(
        [
            1.0,
            min(max(match, 0.0), 1.0),
            min(max(load, 0.0), 1.0),
            min(max(latency_ms / max(1.0, latency_scale_ms), 0.0), 1.0),
            min(max(reputation, 0.0), 1.0),
            1.0 if available else 0.0,
        ]
    )
    norm = float(np.linalg.norm(x))
    return x / norm if norm > 1.0 else x


class SeedLinUCB:
    """One global ridge model over all agents (the seed's GlobalLinUCB)."""

    def __init__(
        self, dimension: int = SEED_DIMENSION, lam: float = 1.0, alpha: float = 1.0, delta: float = 0.05, S: float = 1.0
    ) -> None:
        self.dimension = dimension
        self.lam = lam
        self.alpha = alpha
        self.delta = delta
        self.S = S
        self.a_inverse = np.eye(dimension) / lam
        self.b = np.zeros(dimension)
        self.t = 0

    def theta(self) -> np.ndarray:
        """The ridge estimate A^-1 b."""
        return self.a_inverse @ self.b

    def beta(self) -> float:
        """The seed's confidence width (t counts all updates, floored at 1)."""
        t = max(1, self.t)
        radius = self.dimension * math.log(1.0 + t / self.lam) + 2.0 * math.log(1.0 / self.delta)
        return self.alpha * math.sqrt(radius) + math.sqrt(self.lam) * self.S

    def ucb(self, x: np.ndarray) -> float:
        """Upper confidence bound of one context."""
        variance = max(0.0, float(x @ self.a_inverse @ x))
        return float(self.theta() @ x) + self.beta() * math.sqrt(variance)

    def select(self, contexts: Sequence[np.ndarray]) -> int:
        """Index of the first context with the highest UCB."""
        if not contexts:
            raise ValueError("select needs at least one context")
        scores = [self.ucb(x) for x in contexts]
        return int(np.argmax(scores))

    def update(self, x: np.ndarray, reward: float) -> None:
        """b += r x; A^-1 -= A^-1 x x^T A^-1 / (1 + x^T A^-1 x); t += 1."""
        self.b += reward * x
        projected = self.a_inverse @ x
        denominator = 1.0 + float(x @ projected)
        if denominator > 1e-12:
            self.a_inverse -= np.outer(projected, projected) / denominator
        self.t += 1
