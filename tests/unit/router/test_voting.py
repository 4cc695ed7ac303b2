"""Weighted voting over answers and plans."""

from __future__ import annotations

import pytest

from router.voting import Ballot, ChainBallot, PlanCandidate, can_stop_early, tally, vote_chains, vote_plans


def ballots(*votes: tuple[str, str]) -> list[Ballot]:
    """Ballots in arrival order from (agent id, canonical answer) pairs."""
    return [Ballot(agent, answer, raw=answer.upper(), order=index) for index, (agent, answer) in enumerate(votes)]


def test_majority_wins_with_equal_weights() -> None:
    outcome = tally(ballots(("a", "42"), ("b", "42"), ("c", "41")), reliability={})
    assert outcome.winner == "42"
    assert outcome.winner_raw == "42"
    assert outcome.support == 2
    assert outcome.weights == {"42": 2.0, "41": 1.0}
    assert outcome.margin == pytest.approx(1.0)


def test_reliable_agent_outweighs_two_unreliable_ones() -> None:
    reliability = {"expert": 0.9, "novice-1": 0.3, "novice-2": 0.3}
    outcome = tally(ballots(("expert", "7"), ("novice-1", "8"), ("novice-2", "8")), reliability)
    assert outcome.winner == "7"
    assert outcome.weights["8"] == pytest.approx(0.6)
    assert outcome.margin == pytest.approx(0.3)


def test_default_weight_applies_to_unknown_agents() -> None:
    outcome = tally(ballots(("known", "x"), ("stranger", "y")), {"known": 0.4}, default_weight=0.5)
    assert outcome.winner == "y"


def test_weight_tie_goes_to_higher_confidence() -> None:
    votes = [Ballot("a", "1", confidence=0.2, order=0), Ballot("b", "2", confidence=0.9, order=1)]
    assert tally(votes, {}).winner == "2"


def test_full_tie_goes_to_earliest_answer() -> None:
    assert tally(ballots(("a", "first"), ("b", "second")), {}).winner == "first"
    reordered = [Ballot("a", "p", order=5), Ballot("b", "q", order=1)]
    assert tally(reordered, {}).winner == "q"


def test_empty_answers_never_win_against_an_answer() -> None:
    outcome = tally(ballots(("a", ""), ("b", ""), ("c", "yes")), {})
    assert outcome.winner == "yes"
    assert "" not in outcome.weights


def test_all_empty_answers_give_an_empty_winner() -> None:
    outcome = tally(ballots(("a", ""), ("b", "")), {})
    assert (outcome.winner, outcome.support) == ("", 2)


def test_no_ballots() -> None:
    outcome = tally([], {})
    assert (outcome.winner, outcome.support, outcome.weights) == ("", 0, {})


@pytest.mark.parametrize(
    ("votes", "pending", "reliability", "expected"),
    [
        ([("a", "1"), ("b", "1"), ("c", "1")], [1.0, 1.0], {}, True),  # 3 > 0 + 2
        ([("a", "1"), ("b", "1")], [1.0, 1.0], {}, False),  # 2 == 0 + 2: a late tie could flip it
        ([("a", "1"), ("b", "2")], [0.1], {}, False),  # tied already
        ([("a", "1"), ("b", "2")], [], {}, True),  # nothing outstanding: final
        ([("a", "1"), ("b", "2")], [0.2], {"a": 0.9, "b": 0.5}, True),  # 0.9 > 0.5 + 0.2
        ([("a", "1"), ("b", "2")], [0.5], {"a": 0.9, "b": 0.5}, False),  # 0.9 < 0.5 + 0.5
        ([("a", ""), ("b", "")], [0.1], {}, False),  # only empty answers so far
        ([], [1.0], {}, False),
    ],
)
def test_can_stop_early(
    votes: list[tuple[str, str]], pending: list[float], reliability: dict[str, float], expected: bool
) -> None:
    assert can_stop_early(ballots(*votes), pending, reliability) is expected


def test_plan_with_higher_mean_step_score_wins() -> None:
    plans = [
        PlanCandidate("p1", ("solve it",), (0.4,)),
        PlanCandidate("p2", ("find x", "check x"), (0.9, 0.7)),
    ]
    assert vote_plans(plans) == 1


def test_identical_plans_pool_their_weight() -> None:
    plans = [
        PlanCandidate("p1", ("Find x.", "Check x"), (0.5, 0.5)),
        PlanCandidate("p2", ("Write the essay",), (0.8,)),
        PlanCandidate("p3", ("find  x", "check x."), (0.5, 0.5)),
    ]
    assert vote_plans(plans) == 0


def test_planner_reliability_scales_plan_weight() -> None:
    plans = [PlanCandidate("weak", ("a",), (0.9,)), PlanCandidate("strong", ("b",), (0.6,))]
    assert vote_plans(plans) == 0
    assert vote_plans(plans, reliability={"weak": 0.2, "strong": 0.9}) == 1


def test_plan_tie_goes_to_first_plan() -> None:
    plans = [PlanCandidate("p1", ("a",), (0.5,)), PlanCandidate("p2", ("b",), (0.5,))]
    assert vote_plans(plans) == 0


def test_vote_plans_needs_a_plan() -> None:
    with pytest.raises(ValueError):
        vote_plans([])


def test_chain_vote_pools_the_weight_of_chains_that_agree() -> None:
    """Two lighter chains answering 8 outweigh one heavier chain answering 9; the heavier of the two is answered."""
    chains = [
        ChainBallot("chain-1", "8", "8", 0.40),
        ChainBallot("chain-2", "9", "9", 0.70),
        ChainBallot("chain-3", "8", "8.0", 0.45),
    ]
    chosen, outcome = vote_chains(chains)
    assert outcome.winner == "8"
    assert chosen == 2
    assert outcome.weights == pytest.approx({"8": 0.85, "9": 0.70})


def test_chain_vote_tie_goes_to_the_earliest_chain() -> None:
    chosen, outcome = vote_chains([ChainBallot("chain-1", "8", "8", 0.5), ChainBallot("chain-2", "8", "8", 0.5)])
    assert (chosen, outcome.winner) == (0, "8")
    with pytest.raises(ValueError):
        vote_chains([])
