"""Reward formula and the delayed-reward ledger."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from router.rewards import RewardInputs, RewardLedger, RewardWeights, reward


def test_perfect_run_earns_one_and_failed_run_earns_zero() -> None:
    assert reward(RewardInputs(True, True, True, correct=True)) == pytest.approx(1.0)
    assert reward(RewardInputs(False, False, False, latency_ms=3000.0, cost=5000.0)) == 0.0


@pytest.mark.parametrize(
    ("succeeded", "well_formed", "agreed", "correct", "latency_ms", "cost"),
    list(
        itertools.product(
            [True, False], [True, False], [True, False], [True, False, None], [0.0, 800.0, 10_000.0], [0.0, 5e4]
        )
    ),
)
def test_reward_stays_in_unit_interval(
    succeeded: bool, well_formed: bool, agreed: bool, correct: bool | None, latency_ms: float, cost: float
) -> None:
    assert 0.0 <= reward(RewardInputs(succeeded, well_formed, agreed, correct, latency_ms, cost)) <= 1.0


def test_correctness_dominates_agreement() -> None:
    correct_but_outvoted = reward(RewardInputs(True, True, agreed_with_vote=False, correct=True))
    wrong_but_agreeing = reward(RewardInputs(True, True, agreed_with_vote=True, correct=False))
    agreeing_unknown = reward(RewardInputs(True, True, agreed_with_vote=True, correct=None))
    assert correct_but_outvoted > agreeing_unknown > wrong_but_agreeing


def test_agreement_counts_when_correctness_is_unknown() -> None:
    agreed = reward(RewardInputs(True, True, agreed_with_vote=True))
    disagreed = reward(RewardInputs(True, True, agreed_with_vote=False))
    assert agreed - disagreed == pytest.approx(RewardWeights().agreement)


def test_latency_and_cost_lower_the_reward() -> None:
    fast = reward(RewardInputs(True, True, True, True, latency_ms=100.0))
    slow = reward(RewardInputs(True, True, True, True, latency_ms=1500.0))
    costly = reward(RewardInputs(True, True, True, True, latency_ms=100.0, cost=800.0))
    assert fast > slow
    assert fast > costly
    assert fast - slow == pytest.approx(0.15 * (np.sqrt(1500 / 2000) - np.sqrt(100 / 2000)))


def test_ledger_joins_reward_by_dispatch_id() -> None:
    ledger = RewardLedger()
    ledger.record("d1", "agent-a", np.array([1.0, 0.5]))
    ledger.record("d2", "agent-b", np.array([1.0, 0.2]))
    joined = ledger.join("d2", 0.7)
    assert joined is not None
    assert (joined.agent_id, joined.reward) == ("agent-b", 0.7)
    np.testing.assert_array_equal(joined.x, [1.0, 0.2])
    assert "d1" in ledger and len(ledger) == 1


def test_ledger_unknown_and_duplicate_ids_return_none() -> None:
    ledger = RewardLedger()
    assert ledger.join("never-recorded", 1.0) is None
    ledger.record("d1", "a", np.ones(2))
    assert ledger.record("d1", "b", np.zeros(2)) is False
    joined = ledger.join("d1", 1.0)
    assert joined is not None and joined.agent_id == "a"
    assert ledger.join("d1", 1.0) is None


def test_ledger_copies_the_context() -> None:
    ledger = RewardLedger()
    x = np.ones(2)
    ledger.record("d1", "a", x)
    x[:] = 0.0
    joined = ledger.join("d1", 1.0)
    assert joined is not None
    np.testing.assert_array_equal(joined.x, [1.0, 1.0])


def test_ledger_is_bounded_and_forgets_the_oldest() -> None:
    ledger = RewardLedger(capacity=3)
    for n in range(5):
        ledger.record(f"d{n}", "a", np.ones(1))
    assert len(ledger) == 3
    assert ledger.join("d0", 1.0) is None
    assert ledger.join("d4", 1.0) is not None
    with pytest.raises(ValueError):
        RewardLedger(capacity=0)


def test_ledger_forgets_a_dispatch_that_earns_no_reward() -> None:
    ledger = RewardLedger()
    ledger.record("d1", "agent-a", np.array([1.0, 0.5]))
    ledger.forget("d1")
    ledger.forget("never-recorded")
    assert len(ledger) == 0
    assert ledger.join("d1", 1.0) is None
