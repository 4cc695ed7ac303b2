"""Every agent announces a price per 1k tokens in its beacon: its config's, else its backend's default."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edge_agent.backends.registry import DEFAULT_COST_PER_1K_TOKENS, default_cost_per_1k_tokens
from edge_agent.runtime.assembly import build_worker
from shared.config import AgentConfig
from shared.messages import TaskOptions


def test_the_configured_price_is_announced() -> None:
    worker = build_worker(AgentConfig(backend="echo", cost_per_1k_tokens=0.3), 0, "n1", warm_up=False)
    assert worker.info().cost_per_1k_tokens == 0.3


def test_without_a_price_the_backend_default_is_announced() -> None:
    worker = build_worker(AgentConfig(backend="echo"), 0, "n1", warm_up=False)
    assert worker.info().cost_per_1k_tokens == DEFAULT_COST_PER_1K_TOKENS["echo"]
    assert default_cost_per_1k_tokens("openai") > default_cost_per_1k_tokens("llamacpp")
    assert default_cost_per_1k_tokens("some-plugin") == DEFAULT_COST_PER_1K_TOKENS["llamacpp"]


def test_prices_and_budgets_cannot_be_negative() -> None:
    with pytest.raises(ValidationError, match="cost_per_1k_tokens"):
        AgentConfig(cost_per_1k_tokens=-1.0)
    with pytest.raises(ValidationError, match="budget"):
        TaskOptions(budget=-0.5)
    assert TaskOptions(budget=2.0).budget == 2.0
