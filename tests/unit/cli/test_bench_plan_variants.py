"""`edge-agent bench constrained plans --variant` offers exactly the plan variants the benchmark measures."""

from __future__ import annotations

from bench.constrained import plan_variants
from edge_agent.cli.bench import PLAN_VARIANTS
from router import constrained


def test_the_cli_offers_every_plan_variant() -> None:
    assert sorted(PLAN_VARIANTS) == sorted(plan_variants())


def test_the_router_variant_is_what_the_router_asks() -> None:
    router = plan_variants()["router"]
    assert router.prompt == constrained.PLANNER_PROMPT
    assert (router.max_steps, router.min_steps, router.step_chars) == (
        constrained.MAX_PLAN_STEPS,
        constrained.MIN_PLAN_STEPS,
        constrained.MAX_STEP_CHARS,
    )
