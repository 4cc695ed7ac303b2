"""AgentRegistry (Sparkplug-style epochs, staleness) and RouterRoster, with injected times."""

from __future__ import annotations

from router.registry import AgentRegistry, RouterRoster
from shared.messages import AgentInfo, AgentState, NodeBeacon, NodeState, RouterPresence


def beacon(node_id: str, epoch: int, status: str = "online", agents: tuple[str, ...] = ("a",)) -> NodeBeacon:
    infos = tuple(
        AgentInfo(agent_id=f"{node_id}-{name}", backend="echo", model="echo", max_in_flight=1) for name in agents
    )
    return NodeBeacon(node_id=node_id, epoch=epoch, instance_id=f"i{epoch}", status=status, agents=infos)  # type: ignore[arg-type]


def state(node_id: str, epoch: int, agent: str, load: float) -> NodeState:
    agent_state = AgentState(agent_id=f"{node_id}-{agent}", load=load, in_flight=0, queue_length=0, latency_ema_ms=12.0)
    return NodeState(node_id=node_id, epoch=epoch, agents=(agent_state,))


def live_ids(registry: AgentRegistry, now: float) -> list[str]:
    return sorted(view.agent_id for view in registry.live_agents(now))


def test_online_beacon_makes_its_agents_live() -> None:
    registry = AgentRegistry()
    assert registry.apply_beacon(beacon("n1", 5, agents=("a", "b")), now=0.0)
    assert live_ids(registry, 1.0) == ["n1-a", "n1-b"]
    assert registry.agent_ids_of("n1") == {"n1-a", "n1-b"}


def test_newer_epoch_replaces_the_node_and_its_agents() -> None:
    registry = AgentRegistry()
    registry.apply_beacon(beacon("n1", 5, agents=("old",)), now=0.0)
    assert registry.apply_beacon(beacon("n1", 6, agents=("new",)), now=1.0)
    assert live_ids(registry, 1.0) == ["n1-new"]


def test_older_online_beacon_is_ignored() -> None:
    registry = AgentRegistry()
    registry.apply_beacon(beacon("n1", 6, agents=("new",)), now=0.0)
    assert not registry.apply_beacon(beacon("n1", 5, agents=("old",)), now=1.0)
    assert live_ids(registry, 1.0) == ["n1-new"]


def test_offline_will_of_an_older_epoch_is_ignored() -> None:
    registry = AgentRegistry()
    registry.apply_beacon(beacon("n1", 6), now=0.0)
    assert not registry.apply_beacon(beacon("n1", 5, status="offline"), now=1.0)
    assert live_ids(registry, 1.0) == ["n1-a"]


def test_offline_with_the_same_epoch_removes_the_agents() -> None:
    registry = AgentRegistry()
    registry.apply_beacon(beacon("n1", 6), now=0.0)
    registry.apply_beacon(beacon("n2", 1), now=0.0)
    assert registry.apply_beacon(beacon("n1", 6, status="offline"), now=1.0)
    assert live_ids(registry, 1.0) == ["n2-a"]


def test_offline_is_final_for_its_epoch_but_a_new_birth_revives() -> None:
    registry = AgentRegistry()
    registry.apply_beacon(beacon("n1", 6), now=0.0)
    registry.apply_beacon(beacon("n1", 6, status="offline"), now=1.0)
    assert not registry.apply_beacon(beacon("n1", 6), now=2.0)  # a late duplicate birth of the dead run
    assert live_ids(registry, 2.0) == []
    assert registry.apply_beacon(beacon("n1", 7), now=3.0)
    assert live_ids(registry, 3.0) == ["n1-a"]


def test_state_with_the_current_epoch_updates_the_view() -> None:
    registry = AgentRegistry()
    registry.apply_beacon(beacon("n1", 6), now=0.0)
    assert registry.apply_state(state("n1", 6, "a", load=0.75), now=1.0)
    (view,) = registry.live_agents(1.0)
    assert (view.load, view.latency_ms) == (0.75, 12.0)


def test_state_with_a_wrong_epoch_is_ignored() -> None:
    registry = AgentRegistry()
    registry.apply_beacon(beacon("n1", 6), now=0.0)
    assert not registry.apply_state(state("n1", 5, "a", load=0.9), now=1.0)
    assert not registry.apply_state(state("n1", 7, "a", load=0.9), now=1.0)
    assert not registry.apply_state(state("unknown", 6, "a", load=0.9), now=1.0)
    (view,) = registry.live_agents(1.0)
    assert view.load == 0.0


def test_state_of_an_offline_node_is_ignored() -> None:
    registry = AgentRegistry()
    registry.apply_beacon(beacon("n1", 6), now=0.0)
    registry.apply_beacon(beacon("n1", 6, status="offline"), now=1.0)
    assert not registry.apply_state(state("n1", 6, "a", load=0.1), now=2.0)
    assert live_ids(registry, 2.0) == []


def test_silent_node_is_dropped_after_stale_after_s() -> None:
    registry = AgentRegistry(stale_after_s=10.0)
    registry.apply_beacon(beacon("n1", 1), now=100.0)
    registry.apply_beacon(beacon("n2", 1), now=100.0)
    registry.apply_state(state("n2", 1, "a", load=0.0), now=108.0)  # n2 keeps talking
    assert live_ids(registry, 110.0) == ["n1-a", "n2-a"]
    assert live_ids(registry, 110.5) == ["n2-a"]
    assert live_ids(registry, 118.5) == []


def test_decommission_forgets_the_node() -> None:
    registry = AgentRegistry()
    registry.apply_beacon(beacon("n1", 6), now=0.0)
    registry.forget_node("n1")
    assert live_ids(registry, 0.0) == []
    assert registry.agent_ids_of("n1") == set()
    assert registry.agent_info("n1-a") is None
    # a node that comes back after decommission starts afresh, even with an old epoch
    assert registry.apply_beacon(beacon("n1", 1), now=1.0)
    assert live_ids(registry, 1.0) == ["n1-a"]


def test_live_agents_carry_reliability() -> None:
    registry = AgentRegistry()
    registry.apply_beacon(beacon("n1", 1, agents=("a", "b")), now=0.0)
    views = {view.agent_id: view for view in registry.live_agents(0.0, {"n1-a": 0.9})}
    assert views["n1-a"].reliability == 0.9
    assert views["n1-b"].reliability == 0.5


# --- RouterRoster --------------------------------------------------------------------------------------


def presence(router_id: str, epoch: int, status: str = "online") -> RouterPresence:
    return RouterPresence(router_id=router_id, instance_id=f"i{epoch}", epoch=epoch, status=status)  # type: ignore[arg-type]


def test_roster_lists_online_routers_sorted() -> None:
    roster = RouterRoster()
    for router_id in ("r3", "r1", "r2"):
        roster.apply(presence(router_id, 1))
    assert roster.live() == ["r1", "r2", "r3"]


def test_roster_offline_will_of_the_same_epoch_removes() -> None:
    roster = RouterRoster()
    roster.apply(presence("r1", 5))
    roster.apply(presence("r2", 5))
    roster.apply(presence("r1", 5, status="offline"))
    assert roster.live() == ["r2"]


def test_roster_older_epoch_is_ignored() -> None:
    roster = RouterRoster()
    roster.apply(presence("r1", 6))
    roster.apply(presence("r1", 5, status="offline"))  # Will of the previous run arrives late
    assert roster.live() == ["r1"]
    roster.apply(presence("r1", 7, status="offline"))
    assert roster.live() == []
    roster.apply(presence("r1", 8))
    assert roster.live() == ["r1"]


def test_roster_forget() -> None:
    roster = RouterRoster()
    roster.apply(presence("r1", 1))
    roster.forget("r1")
    roster.forget("never-seen")
    assert roster.live() == []


def test_announced_since_tells_an_agent_back_from_a_loss() -> None:
    registry = AgentRegistry()
    registry.apply_beacon(beacon("n1", 1), 1.0)
    assert registry.announced_since("n1-a", 0.5) and not registry.announced_since("n1-a", 2.0)
    registry.apply_beacon(beacon("n1", 1), 3.0)  # a rebirth (same run) after a broker restart
    assert registry.announced_since("n1-a", 2.0)
    registry.apply_beacon(beacon("n1", 1, "offline"), 4.0)
    assert not registry.announced_since("n1-a", 2.0)  # offline: not back
    assert not registry.announced_since("unknown-agent", 0.0)
