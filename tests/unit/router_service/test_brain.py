"""RoutingBrain: UCB order, rewards joined by dispatch id, persistence and the frozen evaluation mode."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from router.brain import RoutingBrain
from router.cost_policy import CostAwarePolicy
from router.screening import AgentView

AGENTS = [
    AgentView("math-1", "n1", ("mathematical-reasoning",), "math specialist"),
    AgentView("math-2", "n2", ("mathematical-reasoning",), "math specialist", load=0.5, latency_ms=400.0),
    AgentView("writer", "n3", ("creative-writing",), "writer"),
    AgentView("coder", "n4", ("code-generation",), "coder", latency_ms=900.0),
]
STEP = "Compute 17 * 23"


def train(brain: RoutingBrain, favourite: str, rounds: int = 30) -> None:
    """Reward `favourite` fully and every other chosen agent with nothing."""
    for round_number in range(rounds):
        for choice in brain.choose(AGENTS, STEP, top_l=4):
            dispatch_id = f"d{round_number}-{choice.agent_id}"
            brain.record_dispatch(dispatch_id, choice)
            brain.learn(dispatch_id, 1.0 if choice.agent_id == favourite else 0.0)


def test_choose_orders_candidates_by_ucb() -> None:
    brain = RoutingBrain(seed=1)
    train(brain, "writer", rounds=5)
    choices = brain.choose(AGENTS, STEP, top_l=4)
    assert sorted(c.agent_id for c in choices) == sorted(a.agent_id for a in AGENTS)
    ucbs = [choice.ucb for choice in choices]
    assert ucbs[0] == pytest.approx(max(ucbs))
    assert ucbs[1:] == sorted(ucbs[1:], reverse=True)


def test_choose_keeps_top_l_by_screening_and_none_without_agents() -> None:
    brain = RoutingBrain()
    assert len(brain.choose(AGENTS, STEP, top_l=2)) == 2
    assert brain.choose([], STEP) == []


def test_learning_moves_the_rewarded_agent_to_the_front() -> None:
    brain = RoutingBrain(seed=3)
    train(brain, "coder")
    assert brain.choose(AGENTS, STEP, top_l=4)[0].agent_id == "coder"
    other = RoutingBrain(seed=3)
    train(other, "math-2")
    assert other.choose(AGENTS, STEP, top_l=4)[0].agent_id == "math-2"


def test_learn_joins_the_reward_by_dispatch_id() -> None:
    brain = RoutingBrain()
    first, second = brain.choose(AGENTS, STEP, top_l=2)
    brain.record_dispatch("d-first", first)
    brain.record_dispatch("d-second", second)
    assert brain.learn("d-second", 1.0) == second.agent_id
    assert brain.reliability == {second.agent_id: pytest.approx(0.55)}  # 0.9 * 0.5 + 0.1 * 1.0
    assert brain.policy.count(second.agent_id) == 1
    assert brain.policy.count(first.agent_id) == 0
    assert brain.learn("d-second", 1.0) is None  # already joined: no double counting
    assert brain.learn("never-dispatched", 1.0) is None
    assert brain.policy.count(second.agent_id) == 1
    assert brain.learn("d-first", 0.0) == first.agent_id
    assert brain.weight(first.agent_id) == pytest.approx(0.45)
    assert brain.weight("unknown") == 0.5


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    brain = RoutingBrain(seed=5)
    train(brain, "math-1", rounds=10)
    path = tmp_path / "nested" / "brain.json"
    brain.save(path)
    loaded = RoutingBrain.load(path, seed=5)
    assert json.dumps(loaded.to_dict(), sort_keys=True) == json.dumps(brain.to_dict(), sort_keys=True)
    assert loaded.reliability == pytest.approx(brain.reliability)
    original = brain.choose(AGENTS, STEP, top_l=4)
    again = loaded.choose(AGENTS, STEP, top_l=4)
    assert [c.agent_id for c in again] == [c.agent_id for c in original]
    assert [c.ucb for c in again] == pytest.approx([c.ucb for c in original])
    assert not path.with_suffix(".json.tmp").exists()


def test_load_of_a_missing_file_is_a_fresh_brain(tmp_path: Path) -> None:
    brain = RoutingBrain.load(tmp_path / "absent.json")
    assert brain.reliability == {}
    assert brain.policy.arms == []


def test_frozen_brain_does_not_learn(tmp_path: Path) -> None:
    brain = RoutingBrain(seed=2)
    train(brain, "writer", rounds=5)
    path = tmp_path / "brain.json"
    brain.save(path)
    frozen = RoutingBrain.load(path, seed=2, frozen=True)
    before = json.dumps(frozen.to_dict(), sort_keys=True)
    train(frozen, "coder", rounds=20)
    assert json.dumps(frozen.to_dict(), sort_keys=True) == before  # neither LinUCB nor the vote weights moved
    assert frozen.choose(AGENTS, STEP, top_l=4)[0].agent_id == brain.choose(AGENTS, STEP, top_l=4)[0].agent_id


def test_learned_priors_are_saved_with_the_state_and_steer_screening_after_a_reload(tmp_path: Path) -> None:
    """math-2 is busier and slower than math-1, yet once its priors are learned it comes first, after a restart too."""
    brain = RoutingBrain(seed=3)
    assert brain.choose(AGENTS, STEP, ("mathematical-reasoning",), top_l=1, benchmark="gsm8k")[0].agent_id == "math-1"
    for _ in range(20):
        brain.observe("math-1", "gsm8k", "hard", "mathematical-reasoning", False)
        brain.observe("math-2", "gsm8k", "hard", "mathematical-reasoning", True)
    path = tmp_path / "brain.json"
    brain.save(path)
    loaded = RoutingBrain.load(path, seed=3)
    (best,) = loaded.choose(AGENTS, STEP, ("mathematical-reasoning",), top_l=1, difficulty="hard", benchmark="gsm8k")
    assert best.agent_id == "math-2"
    assert best.screening.prior > 0.8


def test_a_state_file_from_before_priors_still_loads(tmp_path: Path) -> None:
    brain = RoutingBrain(seed=1)
    train(brain, "math-1", rounds=3)
    data = brain.to_dict()
    del data["priors"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    loaded = RoutingBrain.load(path)
    assert loaded.updates() == brain.updates() > 0
    assert len(loaded.priors) == 0


def test_frozen_brain_learns_no_priors() -> None:
    brain = RoutingBrain(seed=0)
    brain.policy = brain.policy.freeze()
    brain.observe("math-1", "gsm8k", "hard", None, True)
    assert len(brain.priors) == 0


def test_a_task_budget_keeps_the_cost_aware_policy_off_agents_it_cannot_afford() -> None:
    from router.cost_policy import CostAwarePolicy, CostPolicyConfig, task_kind

    dear = AgentView("math-big", "n1", ("mathematical-reasoning",), "math specialist", cost_per_1k_tokens=2.0)
    cheap = AgentView("math-small", "n2", ("mathematical-reasoning",), "math specialist", cost_per_1k_tokens=0.1)
    brain = RoutingBrain(seed=1)
    brain.cost_policy = CostAwarePolicy(CostPolicyConfig())
    for _ in range(50):  # the dear agent is always right, the cheap one never
        brain.cost_policy.learn("math-big", task_kind(None, None), 1.0)
        brain.cost_policy.learn("math-small", task_kind(None, None), 0.0)
    assert brain.choose([dear, cheap], STEP, top_l=2)[0].agent_id == "math-big"
    # A run of 256 tokens costs 0.512 on the dear agent and 0.0256 on the cheap one.
    assert brain.choose([dear, cheap], STEP, top_l=2, budget=0.05, max_tokens=256)[0].agent_id == "math-small"
    assert brain.choose([dear, cheap], STEP, top_l=2, budget=0.6, max_tokens=256)[0].agent_id == "math-big"


# --- a state file that cannot be read (issue 19 item 11) -----------------------------------------------------


@pytest.mark.parametrize(
    "content", [b"", b"{}", b'{"policy": {', b"[]", b'{"policy": {"format": "other"}}', b"\xff\x00"]
)
def test_an_unreadable_state_file_is_named_kept_aside_and_the_brain_starts_fresh(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "r1.linucb.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="router.brain"):
        brain = RoutingBrain.load(path)
    assert brain.policy.arms == [] and brain.reliability == {}
    (kept,) = tmp_path.glob("r1.linucb.json.corrupt-*")
    assert kept.read_bytes() == content and not path.exists()
    assert str(path) in caplog.text and kept.name in caplog.text
    brain.save(path)  # the next save writes a good file where the bad one was
    assert RoutingBrain.load(path).to_dict() == brain.to_dict()


def test_the_cost_aware_policy_is_restored_from_the_state_file(tmp_path: Path) -> None:
    brain = RoutingBrain(seed=0)
    brain.cost_policy = CostAwarePolicy()
    brain.cost_policy.learn("math-1", "gsm8k|hard", True)
    brain.cost_policy.lam = 0.7
    path = tmp_path / "brain.json"
    brain.save(path)
    loaded = RoutingBrain.load(path, cost_policy=CostAwarePolicy())
    assert loaded.cost_policy is not None
    assert loaded.cost_policy.snapshot() == brain.cost_policy.snapshot()
    assert loaded.to_dict() == brain.to_dict()
    assert RoutingBrain.load(path).cost_policy is None  # a LinUCB router does not pick by cost
