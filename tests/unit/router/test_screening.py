"""Top-L screening: the seed's formula, availability, L and uniqueness."""

from __future__ import annotations

import pytest

from router.capabilities import match_score
from router.screening import AgentView, ScreeningWeights, screen, stability_score

MATH_TASK = "Compute 17 * 3"


def agent(agent_id: str, capabilities: tuple[str, ...] = ("math",), **state: float | bool) -> AgentView:
    """An agent on its own node with the given dynamic state."""
    return AgentView(agent_id, f"node-{agent_id}", capabilities, **state)  # type: ignore[arg-type]


def test_score_matches_hand_computed_formula() -> None:
    view = agent("a", ("math",), load=0.5, latency_ms=500.0)
    [candidate] = screen([view], MATH_TASK, ["math"], prior={"a": 0.8})
    match = match_score(MATH_TASK, ["math"], ("math",))
    stability = 0.4 * (1 - 0.5) + 0.4 * (1 - 500 / 2000) + 0.2 * 1  # = 0.7
    assert candidate.stability == pytest.approx(0.7)
    assert candidate.prior == pytest.approx(0.8)
    assert candidate.match == pytest.approx(match)
    assert candidate.score == pytest.approx(0.5 * match + 0.35 * 0.8 + 0.15 * stability)


@pytest.mark.parametrize(
    ("load", "latency_ms", "available", "expected"),
    [
        (0.0, 0.0, True, 1.0),
        (1.0, 2000.0, True, 0.2),
        (0.25, 5000.0, True, 0.5),  # latency is capped at 2000 ms
        (0.5, 1000.0, False, 0.4),
        (-1.0, -5.0, True, 1.0),  # out-of-range state is clipped
    ],
)
def test_stability_score(load: float, latency_ms: float, available: bool, expected: float) -> None:
    assert stability_score(load, latency_ms, available) == pytest.approx(expected)


def test_unavailable_agents_are_excluded() -> None:
    views = [agent("on"), agent("off", available=False)]
    assert [c.agent_id for c in screen(views, MATH_TASK)] == ["on"]
    assert screen([agent("off", available=False)], MATH_TASK) == []


@pytest.mark.parametrize("top_l", [1, 2, 3, 5])
def test_at_most_l_candidates_best_first(top_l: int) -> None:
    views = [agent(f"a{n}", load=n / 10) for n in range(6)]
    candidates = screen(views, MATH_TASK, top_l=top_l)
    assert [c.agent_id for c in candidates] == [f"a{n}" for n in range(top_l)]
    assert [c.score for c in candidates] == sorted((c.score for c in candidates), reverse=True)


def test_default_l_is_three_and_zero_gives_nothing() -> None:
    views = [agent(f"a{n}") for n in range(5)]
    assert len(screen(views, MATH_TASK)) == 3
    assert screen(views, MATH_TASK, top_l=0) == []


def test_candidates_are_unique_and_the_later_view_wins() -> None:
    views = [agent("a", load=0.0), agent("b", load=0.5), agent("a", load=1.0)]
    candidates = screen(views, MATH_TASK, top_l=3)
    assert sorted(c.agent_id for c in candidates) == ["a", "b"]
    assert candidates[0].agent_id == "b"


def test_ties_are_broken_by_agent_id() -> None:
    views = [agent(name) for name in ("delta", "alpha", "charlie", "bravo")]
    assert [c.agent_id for c in screen(views, MATH_TASK, top_l=3)] == ["alpha", "bravo", "charlie"]


def test_math_agent_outranks_writer_for_math_subtask() -> None:
    views = [agent("writer", ("writing",)), agent("mathematician", ("math", "verification"))]
    assert screen(views, MATH_TASK)[0].agent_id == "mathematician"


def test_prior_function_gets_benchmark_and_difficulty() -> None:
    calls: list[tuple[str, str, str]] = []

    def prior(agent_id: str, benchmark: str, difficulty: str) -> float:
        calls.append((agent_id, benchmark, difficulty))
        return 0.9 if agent_id == "b" else 0.1

    candidates = screen([agent("a"), agent("b")], MATH_TASK, prior=prior, benchmark="gsm8k", difficulty="hard")
    assert candidates[0].agent_id == "b"
    assert sorted(calls) == [("a", "gsm8k", "hard"), ("b", "gsm8k", "hard")]


def test_missing_prior_defaults_to_half() -> None:
    [candidate] = screen([agent("a")], MATH_TASK, prior={"other": 1.0})
    assert candidate.prior == 0.5


def test_custom_weights_change_the_score() -> None:
    view = agent("a", load=0.0, latency_ms=0.0)
    only_prior = ScreeningWeights(match=0.0, prior=1.0, stability=0.0)
    [candidate] = screen([view], MATH_TASK, prior={"a": 0.3}, weights=only_prior)
    assert (candidate.prior, candidate.stability) == (0.3, 1.0)
    assert candidate.score == pytest.approx(0.3)


def test_negative_weights_are_rejected() -> None:
    with pytest.raises(ValueError):
        ScreeningWeights(match=-0.1)
