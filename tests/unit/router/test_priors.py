"""PriorTable: success estimates per (agent, benchmark, difficulty, capability), shrunk towards coarser levels."""

from __future__ import annotations

import json

import pytest

from router.priors import PriorTable, normalise_difficulty
from router.screening import AgentView, screen


def test_no_outcome_gives_the_seed_default() -> None:
    assert PriorTable().estimate("a", "gsm8k", "hard", "mathematical-reasoning") == 0.5


def test_outcomes_move_the_estimate_and_more_outcomes_move_it_further() -> None:
    table = PriorTable()
    table.observe("a", "gsm8k", "hard", "mathematical-reasoning", True)
    once = table.estimate("a", "gsm8k", "hard", "mathematical-reasoning")
    for _ in range(20):
        table.observe("a", "gsm8k", "hard", "mathematical-reasoning", True)
    assert 0.5 < once < table.estimate("a", "gsm8k", "hard", "mathematical-reasoning") < 1.0
    assert table.outcomes("a") == 21
    assert table.estimate("b", "gsm8k", "hard", "mathematical-reasoning") == 0.5  # per agent


def test_hard_and_simple_are_learned_apart() -> None:
    """An agent good on simple items and bad on hard ones gets two different priors for the same benchmark."""
    table = PriorTable()
    for _ in range(10):
        table.observe("a", "gsm8k", "simple", "mathematical-reasoning", True)
        table.observe("a", "gsm8k", "hard", "mathematical-reasoning", False)
    simple = table.estimate("a", "gsm8k", "simple", "mathematical-reasoning")
    hard = table.estimate("a", "gsm8k", "hard", "mathematical-reasoning")
    assert simple > 0.7 and hard < 0.3
    assert table.estimate("a", "gsm8k", "easy", "mathematical-reasoning") == simple  # 'easy' is 'simple'
    assert table.estimate("a", "gsm8k", None, "mathematical-reasoning") == pytest.approx(0.5, abs=0.05)


def test_a_new_capability_starts_from_what_is_known_about_the_agent() -> None:
    table = PriorTable()
    for _ in range(10):
        table.observe("a", "medqa", "hard", "analysis", False)
    assert table.estimate("a", "medqa", "hard", "retrieval") < 0.4  # shrunk towards the agent on medqa/hard
    assert table.estimate("a", "gsm8k", "hard", "retrieval") < 0.5  # and towards the agent overall


def test_learned_priors_reorder_top_l() -> None:
    """Two identical agents: screening with the learned prior keeps the one that succeeds."""
    agents = [AgentView(name, "n", ("mathematical-reasoning",), "math") for name in ("good", "poor")]
    table = PriorTable()
    for _ in range(10):
        table.observe("good", "gsm8k", "hard", "mathematical-reasoning", True)
        table.observe("poor", "gsm8k", "hard", "mathematical-reasoning", False)
    prior = table.for_capability("mathematical-reasoning")
    (best,) = screen(agents, "Compute 17 * 23", prior=prior, benchmark="gsm8k", difficulty="hard", top_l=1)
    assert best.agent_id == "good"
    (unsure,) = screen(agents, "Compute 17 * 23", prior=prior, benchmark="bbh", difficulty="hard", top_l=1)
    assert unsure.prior > 0.5  # another benchmark: shrunk towards the agent's overall record


def test_round_trip_through_json() -> None:
    table = PriorTable()
    table.observe("a", "gsm8k", "hard", "mathematical-reasoning", True)
    table.observe("a", "bbh", None, None, False)
    loaded = PriorTable.from_dict(json.loads(json.dumps(table.to_dict())))
    for key in (("gsm8k", "hard", "mathematical-reasoning"), ("bbh", None, None), ("bbh", "hard", "analysis")):
        assert loaded.estimate("a", *key) == table.estimate("a", *key)


@pytest.mark.parametrize(
    "snapshot",
    [{"format": "other"}, {"format": "symphony-edge/priors/v1", "counts": [["a", "b", "c", "d", 3, 2]]}],
)
def test_a_foreign_or_malformed_snapshot_is_refused(snapshot: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PriorTable.from_dict(snapshot)


def test_difficulty_labels() -> None:
    assert [normalise_difficulty(d) for d in (None, "", " Hard ", "easy", "simple")] == [
        "unknown",
        "unknown",
        "hard",
        "simple",
        "simple",
    ]
