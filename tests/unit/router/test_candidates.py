"""The registry's indexed fleet screens exactly as the list of views does, and stays right as the fleet changes."""

from __future__ import annotations

import numpy as np
import pytest

from router.capabilities import CAPABILITIES
from router.priors import PriorTable
from router.registry import AgentRegistry
from router.screening import AgentView, screen
from shared.messages import AgentInfo, AgentState, NodeBeacon, NodeState

REQUIREMENTS = ("Compute 17 * 23 and check the result", "Summarize the paragraph", "Write a Python parser")


def fleet(size: int, seed: int, personas: int = 5) -> tuple[AgentRegistry, list[NodeState]]:
    rng = np.random.default_rng(seed)
    registry = AgentRegistry(stale_after_s=10.0)
    states = []
    for index in range(size):
        tags = tuple(str(tag) for tag in rng.choice(CAPABILITIES, size=2, replace=False))
        info = AgentInfo(
            agent_id=f"a{index:04d}",
            persona=f"persona {index % personas}",
            capabilities=tags,
            backend="echo",
            model="echo",
            max_in_flight=1,
        )
        registry.apply_beacon(
            NodeBeacon(node_id=f"n{index}", epoch=1, instance_id="i", status="online", agents=(info,)), 0.0
        )
        load = float(rng.choice([0.0, 0.0, 0.5, 1.0]))
        agent_state = AgentState(
            agent_id=info.agent_id,
            load=load,
            in_flight=0,
            queue_length=0,
            latency_ema_ms=float(rng.integers(0, 3) * 100),
            available=bool(rng.random() > 0.2),
        )
        states.append(NodeState(node_id=f"n{index}", epoch=1, agents=(agent_state,)))
    for state in states:
        registry.apply_state(state, 1.0)
    return registry, states


def as_list(registry: AgentRegistry, now: float) -> list[AgentView]:
    return list(registry.live_agents(now))


@pytest.mark.parametrize("size", [1, 7, 300])
@pytest.mark.parametrize("top_l", [1, 3, 16])
def test_indexed_screening_picks_the_same_agents_as_the_list(size: int, top_l: int) -> None:
    registry, _ = fleet(size, seed=size)
    priors = PriorTable()
    for index in range(0, size, 3):
        priors.observe(f"a{index:04d}", "gsm8k", "hard", "mathematical-reasoning", success=index % 2 == 0)
    prior = priors.for_capability("mathematical-reasoning")
    for requirement in REQUIREMENTS:
        pool = registry.live_agents(2.0)
        fast = screen(pool, requirement, (), prior, "gsm8k", "hard", top_l)
        slow = screen(as_list(registry, 2.0), requirement, (), prior, "gsm8k", "hard", top_l)
        assert [c.agent_id for c in fast] == [c.agent_id for c in slow]
        assert [c.score for c in fast] == pytest.approx([c.score for c in slow])


def test_a_homogeneous_idle_fleet_breaks_ties_by_agent_id() -> None:
    registry = AgentRegistry()
    infos = [
        AgentInfo(agent_id=f"a{i:03d}", capabilities=("writing",), backend="e", model="e", max_in_flight=1)
        for i in range(200)
    ]
    for number, info in enumerate(reversed(infos)):
        registry.apply_beacon(
            NodeBeacon(node_id=f"n{number}", epoch=1, instance_id="i", status="online", agents=(info,)), 0.0
        )
    chosen = screen(registry.live_agents(1.0), "write a poem", top_l=3)
    assert [c.agent_id for c in chosen] == ["a000", "a001", "a002"]


def test_states_update_the_index_in_place_and_offline_nodes_leave_it() -> None:
    registry, _ = fleet(50, seed=1)
    busy = NodeState(
        node_id="n3",
        epoch=1,
        agents=(AgentState(agent_id="a0003", load=1.0, in_flight=1, queue_length=0, available=False),),
    )
    registry.apply_state(busy, 2.0)
    assert "a0003" not in {c.agent_id for c in screen(registry.live_agents(2.0), "anything", top_l=50)}
    record = registry.nodes["n4"]
    registry.apply_beacon(record.beacon.model_copy(update={"status": "offline", "sent_at": 5.0}), 3.0)
    assert "a0004" not in {view.agent_id for view in registry.live_agents(3.0)}
    assert len(registry.live_agents(3.0)) == 49
    assert len(registry.live_agents(12.5)) == 0  # the last state came at 2.0 and stale_after_s is 10


def test_a_repeated_birth_keeps_the_state_and_a_new_epoch_resets_it() -> None:
    registry, _ = fleet(3, seed=2)
    loaded = NodeState(
        node_id="n1", epoch=1, agents=(AgentState(agent_id="a0001", load=0.9, in_flight=1, queue_length=0),)
    )
    registry.apply_state(loaded, 2.0)
    beacon = registry.nodes["n1"].beacon
    assert registry.apply_beacon(beacon.model_copy(update={"sent_at": 9.0}), 3.0)
    assert registry.live_agents(3.0).views_of(["a0001"])["a0001"].load == 0.9
    assert registry.apply_beacon(beacon.model_copy(update={"epoch": 2}), 4.0)
    assert registry.live_agents(4.0).views_of(["a0001"])["a0001"].load == 0.0


def test_an_agent_that_moves_to_another_node_stays_indexed_under_it() -> None:
    registry = AgentRegistry()
    info = AgentInfo(agent_id="roamer", backend="e", model="e", max_in_flight=1)
    registry.apply_beacon(NodeBeacon(node_id="old", epoch=1, instance_id="i", status="online", agents=(info,)), 0.0)
    # (While "old" is live the id stays its own: see test_tenancy_ids; it moves once "old" has gone offline.)
    registry.apply_beacon(NodeBeacon(node_id="old", epoch=1, instance_id="i", status="offline", agents=(info,)), 0.5)
    registry.apply_beacon(NodeBeacon(node_id="new", epoch=1, instance_id="i", status="online", agents=(info,)), 1.0)
    registry.forget_node("old")
    (view,) = registry.live_agents(2.0)
    assert (view.agent_id, view.node_id) == ("roamer", "new")


def test_parse_state_takes_a_state_and_refuses_what_decode_refuses() -> None:
    from router.registry import parse_state
    from shared.errors import MessageError
    from shared.messages import encode

    state = NodeState(node_id="n1", epoch=3, agents=(AgentState(agent_id="a", load=0.5, in_flight=1, queue_length=0),))
    assert parse_state(encode(state)) == state
    bad = encode(state).replace(b'"latency_ema_ms":0.0', b'"latency_ema_ms":Infinity')
    for payload in (bad, b"{}", b"[[[[", encode(state).replace(b"node_state", b"node_beacon"), b"x" * 2_000_000):
        with pytest.raises(MessageError):
            parse_state(payload)
