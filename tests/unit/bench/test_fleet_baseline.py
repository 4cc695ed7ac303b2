"""The fleet benchmark's self-consistency baseline: which agent it samples, and how the fleet is compared to it."""

from __future__ import annotations

import pytest

from bench.data.items import BenchItem
from bench.fleet import metrics
from bench.fleet.profiles import DEFAULT_FLEET, ScriptedProfile, best_by_skill, expected_accuracy
from bench.fleet.report import baseline_verdict


def item(benchmark: str, difficulty: str, index: int = 0) -> BenchItem:
    return BenchItem(item_id=f"{benchmark}-{index}", benchmark=benchmark, question="q", gold="1", difficulty=difficulty)


def routed(correct: list[bool], agents: list[str]) -> list[dict[str, object]]:
    return [{"item_id": f"i{n}", "correct": ok, "agents": agents} for n, ok in enumerate(correct)]


def test_the_baseline_samples_the_agent_whose_configured_skill_expects_the_most_on_the_stream() -> None:
    math_stream = [item("gsm8k", "easy", n) for n in range(3)]
    mixed = [item("gsm8k", "easy"), item("medqa", "easy"), item("bbh", "easy")]

    assert best_by_skill(DEFAULT_FLEET, math_stream) == "math-board"
    assert expected_accuracy(DEFAULT_FLEET[0], math_stream) == pytest.approx(0.95)
    # on a mixed stream each specialist is poor two times in three: the generalist (0.7 on each) is best
    assert expected_accuracy(DEFAULT_FLEET[0], mixed) == pytest.approx((0.95 + 0.3 + 0.3) / 3)
    assert best_by_skill(DEFAULT_FLEET, mixed) == "generalist"


def test_ties_in_configured_skill_go_to_the_first_agent_by_name() -> None:
    twins = (ScriptedProfile("b", (), {"*": 0.5}, 1.0), ScriptedProfile("a", (), {"*": 0.5}, 1.0))
    assert best_by_skill(twins, [item("gsm8k", "medium")]) == "a"


@pytest.mark.parametrize(
    ("fleet", "baseline", "margin", "beats", "words"),
    [
        (
            [True, True, True, False],
            [True, True, False, False],
            0.25,
            True,
            "beats the self-consistency baseline by 25.0",
        ),
        ([True, False, False, False], [True, True, False, False], -0.25, False, "does NOT beat"),
        ([True, False], [False, True], 0.0, False, "ties the self-consistency baseline"),
    ],
)
def test_the_comparison_says_plainly_whether_the_fleet_beats_the_baseline_and_by_how_much(
    fleet: list[bool], baseline: list[bool], margin: float, beats: bool, words: str
) -> None:
    vote = routed(fleet, ["math-board", "med-board", "generalist"])
    sampled = routed(baseline, ["math-board"] * 3)
    tokens = {(agent, f"i{n}"): 100 for agent in ("math-board", "med-board", "generalist") for n in range(4)}

    compared = metrics.against_baseline(vote, sampled)
    assert compared["margin"] == pytest.approx(margin)
    assert compared["fleet_beats_baseline"] is beats

    summary = {
        "agent": "math-board",
        "runs_per_task": {"vote3": metrics.runs_per_task(vote), "self_consistency": metrics.runs_per_task(sampled)},
        "tokens_per_task": {
            "vote3": metrics.tokens_per_task(vote, tokens),
            "self_consistency": metrics.tokens_per_task(sampled, tokens),
        },
        **compared,
    }
    sentence = baseline_verdict(summary)
    assert words in sentence
    assert "math-board sampled 3 times" in sentence
    assert "3.00 ballots and 300 tokens counted per task against 3.00 and 300" in sentence
