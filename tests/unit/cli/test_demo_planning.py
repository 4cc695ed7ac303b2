"""`edge-agent demo` says what planning did: the plan that ran, or what the planners wrote and why it was not used."""

from __future__ import annotations

from edge_agent.cli.demo import planning_report

QUESTION = "A shop sells pens at 3 dollars each. How much do 7 pens cost?"


def test_a_plan_that_ran_is_shown_step_by_step_with_its_planner() -> None:
    planned = {
        "plan": ["Compute the cost of 7 pens", "Subtract the cost from 50 dollars"],
        "chosen": "demo-planner",
        "candidates": [{"planner": "demo-planner", "steps": []}, {"planner": "demo-writer", "steps": []}],
        "constrained": ["demo-planner", "demo-writer"],
    }
    assert planning_report(planned, "default") == [
        "",
        "planning: the plan of demo-planner (decoded under the plan schema) ran (2 usable plan(s)):",
        "  1. Compute the cost of 7 pens",
        "  2. Subtract the cost from 50 dollars",
    ]


def test_a_plan_that_ran_shows_each_steps_voted_answer() -> None:
    planned = {"plan": ["Compute the cost of 7 pens", "Subtract it from 50"], "chosen": "demo-math", "candidates": []}
    lines = planning_report(planned, "default", ["21", "29\nand more"])
    assert lines[2:] == [
        "  1. Compute the cost of 7 pens",
        "     -> 21",
        "  2. Subtract it from 50",
        "     -> 29 and more",
    ]


def test_degenerate_plans_are_shown_and_the_fallback_is_said_plainly() -> None:
    planned = {
        "plan": [QUESTION],
        "fallback": True,
        "constrained": ["demo-planner"],
        "rejected": [
            {"planner": "demo-planner", "steps": ["1. 3. 5. 7."], "why": "off topic: step 1 of 1 shares no word"},
            {"planner": "demo-writer", "steps": [], "why": "the run failed: timeout"},
        ],
    }
    lines = planning_report(planned, "default")
    assert lines[1] == "planning: no plan was usable, so the question ran as one step. The planners wrote:"
    assert "  demo-planner (decoded under the plan schema): ['1. 3. 5. 7.']" in lines
    assert "    not used: off topic: step 1 of 1 shares no word" in lines
    assert "  demo-writer: (no steps)" in lines and "    not used: the run failed: timeout" in lines
    assert "SmolLM2, 135M parameters" in lines[-1]
    assert "SmolLM2" not in planning_report(planned, "/models/qwen.gguf")[-1]  # only the bundled model is named


def test_skipped_planning_says_why() -> None:
    assert planning_report({"plan": [QUESTION], "skipped": True, "reason": "simple query"}, "default") == [
        "",
        "planning: skipped (simple query); the question ran as one step",
    ]
