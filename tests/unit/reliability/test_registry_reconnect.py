"""A node whose connection dropped (its Will fired) and that re-announced itself is live again (issue 7)."""

from __future__ import annotations

from router.registry import AgentRegistry
from shared.messages import AgentInfo, NodeBeacon


def beacon(status: str, sent_at: float, epoch: int = 6) -> NodeBeacon:
    agent = AgentInfo(agent_id="n1-a", backend="echo", model="echo", max_in_flight=1)
    return NodeBeacon(
        node_id="n1",
        epoch=epoch,
        instance_id="i1",
        status=status,
        agents=(agent,),
        sent_at=sent_at,  # type: ignore[arg-type]
    )


def live(registry: AgentRegistry, now: float) -> list[str]:
    return [view.agent_id for view in registry.live_agents(now)]


def test_birth_after_the_will_of_the_same_run_revives_the_node() -> None:
    registry = AgentRegistry()
    will = beacon("offline", sent_at=100.0)  # built at start, before the first connect
    registry.apply_beacon(beacon("online", sent_at=100.1), now=0.0)
    assert registry.apply_beacon(will, now=1.0)  # the connection was lost
    assert live(registry, 1.0) == []
    assert registry.apply_beacon(beacon("online", sent_at=160.0), now=2.0)  # re-announced on reconnect
    assert live(registry, 2.0) == ["n1-a"]


def test_birth_older_than_a_graceful_goodbye_stays_ignored() -> None:
    registry = AgentRegistry()
    registry.apply_beacon(beacon("online", sent_at=100.1), now=0.0)
    registry.apply_beacon(beacon("offline", sent_at=200.0), now=1.0)  # graceful stop
    assert not registry.apply_beacon(beacon("online", sent_at=100.1), now=2.0)
    assert live(registry, 2.0) == []


def test_second_offline_of_the_same_epoch_is_not_news() -> None:
    registry = AgentRegistry()
    registry.apply_beacon(beacon("online", sent_at=100.1), now=0.0)
    assert registry.apply_beacon(beacon("offline", sent_at=200.0), now=1.0)
    assert not registry.apply_beacon(beacon("offline", sent_at=100.0), now=2.0)  # the Will after the goodbye
