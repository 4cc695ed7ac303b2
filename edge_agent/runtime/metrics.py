"""Per-agent run statistics for the state messages: latency EMA, counters, tokens/s, p50/p95."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

LATENCY_EMA_BETA = 0.2
WINDOW = 256


@dataclass
class AgentMetrics:
    """Statistics of one agent's finished runs (pure: fed by the worker, read by the state publisher)."""

    runs: int = 0
    errors: int = 0
    latency_ema_ms: float = 0.0
    tokens_per_second: float | None = None
    _latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    def record(self, latency_ms: float, completion_tokens: int, ok: bool) -> None:
        self.runs += 1
        if not ok:
            self.errors += 1
            return
        if self.runs - self.errors == 1:
            self.latency_ema_ms = latency_ms
        else:
            self.latency_ema_ms = (1 - LATENCY_EMA_BETA) * self.latency_ema_ms + LATENCY_EMA_BETA * latency_ms
        self._latencies_ms.append(latency_ms)
        if latency_ms > 0 and completion_tokens > 0:
            self.tokens_per_second = completion_tokens / (latency_ms / 1000.0)

    def percentile(self, fraction: float) -> float | None:
        if not self._latencies_ms:
            return None
        ordered = sorted(self._latencies_ms)
        rank = math.ceil(fraction * len(ordered) - 1e-9)  # nearest rank: p95 of 20 runs is the 19th, not the max
        return ordered[min(len(ordered) - 1, max(0, rank - 1))]
