"""Locality: a subtask runs at the submitter's site unless a reason to cross a link holds; ownership by site."""

from __future__ import annotations

from typing import Any

import pytest

from router.brain import RoutingBrain
from router.locality import LocalityPolicy, Option, SiteScopedBrain, place, site_owners, task_owner
from router.registry import AgentRegistry
from router.screening import AgentView
from shared.messages import AgentInfo, AgentState, NodeBeacon, NodeState, RouterPresence

POLICY = LocalityPolicy(load_threshold=0.8, link_cost=0.15, match_slack=0.1)


def option(agent_id: str, match: float = 0.9, load: float = 0.0, reward: float = 0.5, seen: int = 20) -> Option:
    return Option(agent_id, match, load, reward, seen)


@pytest.mark.parametrize(
    ("local", "remote", "scope", "reason"),
    [
        ([option("a1")], [option("b1")], "local", "local_qualifies"),
        ([option("a1")], [], "local", "no_remote_agent"),
        ([], [option("b1")], "remote", "no_local_agent"),
        ([option("a1", match=0.2)], [option("b1", match=0.9)], "remote", "no_local_agent"),
        ([option("a1", match=0.85)], [option("b1", match=0.9)], "local", "local_qualifies"),  # within the slack
        ([option("a1", load=0.9), option("a2", load=1.0)], [option("b1")], "remote", "local_loaded"),
        ([option("a1", load=0.9), option("a2", load=0.5)], [option("b1")], "local", "local_qualifies"),
        ([option("a1", reward=0.3)], [option("b1", reward=0.9)], "remote", "remote_reward"),
        ([option("a1", reward=0.5)], [option("b1", reward=0.6)], "local", "local_qualifies"),  # under the link cost
        ([option("a1", reward=0.3)], [option("b1", reward=0.9, seen=3)], "local", "local_qualifies"),  # too few runs
    ],
)
def test_placement(local: list[Option], remote: list[Option], scope: str, reason: str) -> None:
    placement = place(local, remote, POLICY)
    assert (placement.scope, placement.reason) == (scope, reason)


def test_the_trace_says_which_side_and_why_with_the_figures() -> None:
    trace = place([option("a1", reward=0.2)], [option("b1", reward=0.9)], POLICY).trace("a")
    assert trace["site"] == "a" and trace["scope"] == "remote" and trace["reason"] == "remote_reward"
    assert trace["local"]["agent"] == "a1" and trace["remote"]["reward"] == 0.9


def test_a_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        LocalityPolicy(load_threshold=1.5)


def registry_of(sites: dict[str, list[tuple[str, float]]]) -> AgentRegistry:
    """One node per agent: {site: [(agent id, load)]}, every agent a math agent."""
    registry = AgentRegistry(stale_after_s=60.0)
    for site, agents in sites.items():
        for agent_id, load in agents:
            info = AgentInfo(
                agent_id=agent_id, capabilities=("mathematical-reasoning",), backend="echo", model="m", max_in_flight=2
            )
            beacon = NodeBeacon(
                node_id=f"node-{agent_id}", epoch=1, instance_id="i", status="online", agents=(info,), site=site
            )
            registry.apply_beacon(beacon, 0.0)
            state = AgentState(agent_id=agent_id, load=load, in_flight=0, queue_length=0)
            registry.apply_state(NodeState(node_id=f"node-{agent_id}", epoch=1, agents=(state,)), 0.0)
    return registry


def choose(registry: AgentRegistry, site: str | None, **extra: Any) -> tuple[list[str], list[dict[str, Any]]]:
    traces: list[dict[str, Any]] = []
    brain = SiteScopedBrain(RoutingBrain(seed=1), site, POLICY, traces.append, **extra)
    choices = brain.choose(registry.live_agents(1.0), "compute 17 * 23", ("mathematical-reasoning",), 3)
    return [choice.agent_id for choice in choices], traces


def test_a_task_runs_on_its_own_site_while_an_agent_there_qualifies() -> None:
    registry = registry_of({"a": [("a1", 0.0)], "b": [("b1", 0.0), ("b2", 0.0)]})
    order, traces = choose(registry, "a")
    assert order[0] == "a1" and set(order[1:]) == {"b1", "b2"}  # the other site's agents are spares
    assert traces == [traces[0]] and traces[0]["reason"] == "local_qualifies"


def test_a_task_crosses_the_link_when_its_site_is_loaded_or_empty() -> None:
    loaded = registry_of({"a": [("a1", 0.9)], "b": [("b1", 0.0)]})
    order, traces = choose(loaded, "a")
    assert order[0] == "b1" and traces[0]["reason"] == "local_loaded"
    empty = registry_of({"b": [("b1", 0.0)]})
    order, traces = choose(empty, "a")
    assert order == ["b1"] and traces[0]["reason"] == "no_local_agent"


def test_a_site_cut_off_from_the_hub_answers_with_its_own_agents() -> None:
    registry = registry_of({"a": [("a1", 0.95)]})  # loaded, but nothing elsewhere is reachable
    order, traces = choose(registry, "a")
    assert order == ["a1"] and traces[0]["reason"] == "no_remote_agent"


def test_a_site_agent_from_a_summary_is_a_remote_candidate() -> None:
    registry = registry_of({"a": [("a1", 1.0)]})
    site_b = AgentView("site:b", "router-b", ("mathematical-reasoning",), load=0.1, site="b")
    order, traces = choose(registry, "a", site_agents=lambda requirement, tags, limit: [site_b])
    assert order[0] == "site:b" and traces[0]["reason"] == "local_loaded"


def test_the_scoped_brain_learns_into_the_routers_brain() -> None:
    shared = RoutingBrain(seed=1)
    scoped = SiteScopedBrain(shared, "a", POLICY, lambda data: None)
    scoped.reliability["x"] = 0.9
    assert shared.reliability["x"] == 0.9 and scoped.weight("x") == 0.9


def presence(router_id: str, site: str | None, status: str = "online") -> RouterPresence:
    return RouterPresence(router_id=router_id, instance_id="i", epoch=1, status=status, site=site)  # type: ignore[arg-type]


def test_the_routers_of_a_tasks_site_own_it_and_any_router_when_none_is_live() -> None:
    presences = {p.router_id: p for p in (presence("ra", "a"), presence("rb", "b"), presence("hub", None))}
    assert site_owners("a", presences) == ["ra"]
    assert site_owners(None, presences) == ["hub", "ra", "rb"]
    assert all(task_owner(f"t{i}", "a", presences) == "ra" for i in range(20))
    presences["ra"] = presence("ra", "a", "offline")
    assert site_owners("a", presences) == ["hub", "rb"]


def test_a_site_whose_agents_serve_poorly_sends_work_where_its_summary_says_they_serve_well() -> None:
    registry = registry_of({"a": [("a1", 0.0)]})
    brain = RoutingBrain(seed=1)
    for number in range(20):  # a1 answers badly, and this router has learned it
        choice = brain.choose(registry.live_agents(1.0), "compute 17 * 23", ("mathematical-reasoning",), 1)[0]
        brain.record_dispatch(f"d{number}", choice)
        brain.learn(f"d{number}", 0.0)
    good = AgentView("site:b", "rb", ("mathematical-reasoning",), reliability=0.9, site="b", observations=50)
    traces: list[dict[str, Any]] = []
    scoped = SiteScopedBrain(brain, "a", POLICY, traces.append, lambda requirement, tags, limit: [good])
    order = [
        c.agent_id for c in scoped.choose(registry.live_agents(1.0), "compute 17 * 23", ("mathematical-reasoning",), 3)
    ]
    assert order[0] == "site:b" and traces[0]["reason"] == "remote_reward"
    unproven = AgentView("site:b", "rb", ("mathematical-reasoning",), reliability=0.9, site="b", observations=2)
    traces.clear()
    scoped = SiteScopedBrain(brain, "a", POLICY, traces.append, lambda requirement, tags, limit: [unproven])
    assert (
        scoped.choose(registry.live_agents(1.0), "compute 17 * 23", ("mathematical-reasoning",), 3)[0].agent_id == "a1"
    )


def test_the_trace_shows_a_placement_in_words() -> None:
    from fleet_observe.render import event_line
    from shared.messages import TaskEvent

    data = place([option("a1", load=0.9)], [option("site:b")], POLICY).trace("a")
    line = event_line(TaskEvent(task_id="t", router_id="r", event="placed", at=1.0, data=data), 0.0)
    assert "remote for site a: local_loaded" in line and "site:b" in line


def test_a_hub_router_without_boards_routes_to_the_site_that_fits_by_its_summary() -> None:
    from router.summaries import SiteDirectory
    from shared.messages import CapabilitySummary, SiteSummary

    def summary(site: str, capabilities: tuple[str, ...]) -> SiteSummary:
        line = CapabilitySummary(capabilities=capabilities, model="m", agents_live=3, slots=6, free_slots=6)
        return SiteSummary(site=site, router_id=f"router-{site}", epoch=1, seq=1, entries=(line,))

    directory = SiteDirectory()
    directory.apply(summary("writers", ("writing", "summarization")), 0.0)
    directory.apply(summary("maths", ("mathematical-reasoning", "verification")), 0.0)
    traces: list[dict[str, Any]] = []

    def site_agents(requirement: str, tags: Any, limit: int) -> list[AgentView]:
        return directory.best(1.0, {}, requirement, tags, limit)

    hub = SiteScopedBrain(RoutingBrain(seed=1), None, POLICY, traces.append, site_agents)
    choices = hub.choose(AgentRegistry().live_agents(1.0), "compute 17 * 23", ("mathematical-reasoning",), 3)
    assert choices[0].agent_id == "site:maths" and traces[0]["reason"] == "no_local_agent"
