"""Site summaries: their lines, their schedule, the directory of other sites, and a site seen as one agent."""

from __future__ import annotations

import asyncio

from router.brain import RoutingBrain
from router.registry import AgentRegistry
from router.relay import SiteAgent
from router.summaries import SiteDirectory, SummarySchedule, site_views, summary_entries
from shared.messages import AgentInfo, AgentState, NodeBeacon, NodeState, RunRequest, RunResult, SiteSummary
from shared.topics import site_agent_id, site_of_agent


def site_registry(loads: list[float], capabilities: tuple[str, ...] = ("writing",)) -> AgentRegistry:
    registry = AgentRegistry(stale_after_s=60.0)
    for index, load in enumerate(loads):
        info = AgentInfo(agent_id=f"a{index}", capabilities=capabilities, backend="echo", model="smol", max_in_flight=2)
        node = f"n{index}"
        registry.apply_beacon(NodeBeacon(node_id=node, epoch=1, instance_id="i", status="online", agents=(info,)), 0)
        state = AgentState(agent_id=info.agent_id, load=load, in_flight=0, queue_length=0, latency_ema_ms=100.0 * index)
        registry.apply_state(NodeState(node_id=node, epoch=1, agents=(state,)), 0)
    return registry


def entries_of(registry: AgentRegistry, reliability: dict[str, float] | None = None):  # type: ignore[no-untyped-def]
    pool = registry.live_agents(1.0)
    return summary_entries(registry.index, pool.live, reliability or {})


def test_a_summary_line_counts_agents_slots_free_slots_latency_and_reliability() -> None:
    (line,) = entries_of(site_registry([0.0, 0.5, 1.0]), {"a0": 0.9, "elsewhere": 0.1})
    assert (line.capabilities, line.model, line.agents_live, line.slots, line.free_slots) == (
        ("writing",),
        "smol",
        3,
        6,
        3,
    )
    assert line.latency_p50_ms == 100.0 and line.latency_p95_ms == 190.0
    assert abs(line.reliability - (0.9 + 0.5 + 0.5) / 3) < 1e-3


def test_agents_with_other_capabilities_or_none_get_their_own_lines() -> None:
    registry = site_registry([0.0, 0.0])
    info = AgentInfo(agent_id="plain", backend="echo", model="smol", max_in_flight=1)
    registry.apply_beacon(NodeBeacon(node_id="np", epoch=1, instance_id="i", status="online", agents=(info,)), 0)
    lines = entries_of(registry)
    assert [(line.capabilities, line.agents_live) for line in lines] == [((), 1), (("writing",), 2)]


def test_the_schedule_publishes_on_time_and_on_material_change_only() -> None:
    schedule = SummarySchedule(interval_s=5.0, min_gap_s=1.0)
    quiet = entries_of(site_registry([0.0, 0.0]))
    assert schedule.due(quiet, 0.0)
    schedule.published(quiet, 0.0)
    assert not schedule.due(quiet, 2.0)  # nothing changed, not yet time
    assert schedule.due(quiet, 5.0)
    busy = entries_of(site_registry([1.0, 1.0]))  # every slot taken: material
    assert not schedule.due(busy, 0.5)  # but not twice within the minimum gap
    assert schedule.due(busy, 1.0)
    slightly = entries_of(site_registry([0.0, 0.25]))  # all 4 slots still free (rounded): not material
    assert not schedule.due(slightly, 1.0)


def summary(site: str, seq: int, free: int = 2, epoch: int = 1) -> SiteSummary:
    entries = entries_of(site_registry([0.0] * free))
    return SiteSummary(site=site, router_id=f"router-{site}", epoch=epoch, seq=seq, entries=entries)


def test_the_directory_keeps_the_newest_summary_and_forgets_stale_ones() -> None:
    directory = SiteDirectory(stale_after_s=10.0)
    assert directory.apply(summary("b", 2), 0.0)
    assert not directory.apply(summary("b", 1), 1.0)  # older
    assert not directory.apply(summary("b", 2), 11.0)  # a retained replay (a restarted hub): b stays stale
    assert directory.views(11.0, {}) == []
    assert directory.apply(summary("b", 1, epoch=2), 1.0)  # a restarted router starts again
    assert directory.apply(summary("c", 1), 5.0)
    assert [view.agent_id for view in directory.views(6.0, {})] == ["site:b", "site:c"]
    assert [view.agent_id for view in directory.views(12.0, {})] == ["site:c"]  # b's went stale
    assert [view.agent_id for view in directory.views(6.0, {}, exclude="b")] == ["site:c"]
    assert [view.agent_id for view in directory.best(12.0, {}, "write a poem", ("writing",), 5)] == ["site:c"]
    directory.forget_router("router-c")
    assert directory.views(6.0, {}) and "c" not in directory.summaries
    assert directory.best(6.0, {}, "write a poem", ("writing",), 5)[0].agent_id == "site:b"


def test_a_site_is_one_agent_with_its_capabilities_load_and_learned_reward() -> None:
    registry = site_registry([0.0, 1.0])
    entries = summary_entries(registry.index, registry.live_agents(1.0).live, {"a0": 0.9, "a1": 0.7}, {"a0": 12})
    (view,) = site_views(SiteSummary(site="b", router_id="rb", epoch=1, seq=1, entries=entries))
    assert (view.agent_id, view.site, view.capabilities, view.available) == ("site:b", "b", ("writing",), True)
    assert view.load == 0.5 and view.reliability == 0.9 and view.observations == 12  # learned, by the runs


def test_the_directory_offers_each_site_once_by_its_best_line_for_the_requirement() -> None:
    math = AgentInfo(agent_id="m", capabilities=("mathematical-reasoning",), backend="echo", model="q", max_in_flight=1)
    registry = site_registry([0.0])
    registry.apply_beacon(NodeBeacon(node_id="nm", epoch=1, instance_id="i", status="online", agents=(math,)), 0)
    entries = entries_of(registry)
    directory = SiteDirectory(stale_after_s=10.0)
    directory.apply(SiteSummary(site="b", router_id="rb", epoch=1, seq=1, entries=entries), 0.0)
    directory.apply(summary("c", 1), 0.0)  # writers only
    best = directory.best(1.0, {}, "compute 17 * 23", ("mathematical-reasoning",), 2)
    assert [(view.agent_id, view.capabilities) for view in best] == [
        ("site:b", ("mathematical-reasoning",)),
        ("site:c", ("writing",)),
    ]
    assert site_of_agent(site_agent_id("b")) == "b" and site_of_agent("a0") is None


def test_a_run_for_the_site_agent_runs_on_a_board_and_answers_as_the_site() -> None:
    registry = site_registry([0.0, 0.0])
    asked: list[RunRequest] = []

    async def run(request: RunRequest, timeout_s: float) -> RunResult:
        asked.append(request)
        error = "timeout" if len(asked) == 1 else None  # the first board fails: the next candidate answers
        return RunResult(
            dispatch_id=request.dispatch_id,
            task_id=request.task_id,
            agent_id=request.agent_id,
            node_id="n",
            text="" if error else "42",
            error=error,  # type: ignore[arg-type]
        )

    agent = SiteAgent(RoutingBrain(seed=0), lambda: registry.live_agents(1.0), run, "symphony/f/router/rb/inbox")
    request = RunRequest(
        dispatch_id="d1",
        task_id="t1",
        agent_id="site:b",
        subtask="write a haiku",
        reply_topic="symphony/f/router/hub/inbox",
    )
    result = asyncio.run(agent.serve(request))
    assert (result.dispatch_id, result.agent_id, result.text, result.ok) == ("d1", "site:b", "42", True)
    assert [r.reply_topic for r in asked] == ["symphony/f/router/rb/inbox"] * 2
    assert len({r.agent_id for r in asked}) == 2 and all(r.dispatch_id.startswith("d1.relay") for r in asked)
