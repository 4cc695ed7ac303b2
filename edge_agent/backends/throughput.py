"""Measure a backend's generation speed, as advertised in the node's capability beacon."""

from __future__ import annotations

from edge_agent.backends.base import Backend, ChatMessage, GenerationOptions

WARM_UP_MESSAGES: list[ChatMessage] = [
    {"role": "user", "content": "Count from one to twenty in words, separated by spaces."}
]


def measure_tokens_per_second(backend: Backend, max_tokens: int = 16, seed: int = 0) -> float:
    """Run one short greedy generation and return completion tokens per second of wall-clock time.

    A two-token call first pays for the engine's lazy warm-up, so the figure is the steady generation speed
    (prompt processing included); the beacon treats it as an estimate. Returns 0.0 when nothing was generated.
    """
    backend.generate(WARM_UP_MESSAGES, GenerationOptions(max_tokens=2, temperature=0.0, seed=seed))  # warm caches
    options = GenerationOptions(max_tokens=max_tokens, temperature=0.0, seed=seed)
    generation = backend.generate(WARM_UP_MESSAGES, options)
    if generation.completion_tokens == 0 or generation.latency_s <= 0:
        return 0.0
    return generation.completion_tokens / generation.latency_s
