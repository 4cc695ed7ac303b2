"""Per-site summaries: what crosses the WAN links instead of every board's beacon and state.

A site router summarises its site per (capability, model): live agents, run slots, free slots, latency
percentiles (of the agents' latency averages) and learned reliability. It publishes the summary, retained, on
`site/{site}/summary` every `interval_s` and when it changes materially (an agent comes or goes, a capability
runs out of free slots or gets some back), at most once per `min_gap_s`. Board states change every few seconds;
a summary changes when the site does, so the WAN carries a few messages per site instead of one per board.

Routers elsewhere keep the newest summary per site (`SiteDirectory`) and see each site as one agent,
`site:{site}` (`site_view`): its capabilities are the site's, its load the share of busy slots, its latency the
site's median. A run sent to that agent reaches the site's router, which places it on a board (router/relay.py).

Pure: the caller passes the time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from router.candidates import DEFAULT_RELIABILITY, FleetIndex
from shared.messages import CapabilitySummary, SiteSummary
from shared.topics import site_agent_id
from router.screening import AgentView

GENERAL = "general"  # the summary line of agents that announce no capability


@dataclass
class _Line:
    agents: int = 0
    slots: int = 0
    free: int = 0
    latencies: list[float] = field(default_factory=list)
    reliabilities: list[float] = field(default_factory=list)


def summary_entries(
    fleet: FleetIndex, slots: Iterable[int], reliability: Mapping[str, float]
) -> tuple[CapabilitySummary, ...]:
    """The (capability, model) lines of the agents in `slots` of the index (the live agents of one site)."""
    lines: dict[tuple[str, str], _Line] = defaultdict(_Line)
    for slot in slots:
        info = fleet.infos[slot]
        if info is None:
            continue
        available = bool(fleet.available[slot])
        load = min(max(float(fleet.load[slot]), 0.0), 1.0)
        free = int(round(info.max_in_flight * (1.0 - load))) if available else 0
        for capability in info.capabilities or (GENERAL,):
            line = lines[(capability, info.model)]
            line.agents += 1
            line.slots += info.max_in_flight
            line.free += free
            line.latencies.append(float(fleet.latency[slot]))
            line.reliabilities.append(reliability.get(info.agent_id, DEFAULT_RELIABILITY))
    return tuple(_entry(capability, model, line) for (capability, model), line in sorted(lines.items()))


def _entry(capability: str, model: str, line: _Line) -> CapabilitySummary:
    p50, p95 = np.percentile(line.latencies, [50, 95]) if line.latencies else (0.0, 0.0)
    return CapabilitySummary(
        capability=capability[:64],
        model=model[:256],
        agents_live=line.agents,
        slots=line.slots,
        free_slots=line.free,
        latency_p50_ms=round(float(p50), 1),
        latency_p95_ms=round(float(p95), 1),
        reliability=round(min(max(float(np.mean(line.reliabilities)), 0.0), 1.0), 4),
    )


def material_key(entries: Iterable[CapabilitySummary]) -> tuple[tuple[str, str, int, int, int], ...]:
    """What makes a summary worth sending before its schedule: agents, slots, and free slots by quarter."""
    return tuple(
        (e.capability, e.model, e.agents_live, e.slots, _quarter(e.free_slots, e.slots)) for e in entries
    )


def _quarter(free: int, slots: int) -> int:
    """0 when nothing is free, else 1..4: the quarter of the slots that is free (rounded up)."""
    return 0 if free <= 0 or slots <= 0 else min(4, 1 + (4 * free - 1) // slots)


class SummarySchedule:
    """When to publish: every `interval_s`, and on a material change at most once per `min_gap_s`."""

    def __init__(self, interval_s: float, min_gap_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.min_gap_s = min(min_gap_s, interval_s)
        self.last_key: tuple[tuple[str, str, int, int, int], ...] | None = None
        self.last_at: float | None = None
        self.seq = 0

    def due(self, entries: Iterable[CapabilitySummary], now: float) -> bool:
        if self.last_at is None:
            return True
        since = now - self.last_at
        return since >= self.interval_s or (since >= self.min_gap_s and material_key(entries) != self.last_key)

    def published(self, entries: Iterable[CapabilitySummary], now: float) -> int:
        """Record a publication; returns its sequence number."""
        self.last_key, self.last_at = material_key(entries), now
        self.seq += 1
        return self.seq


class SiteDirectory:
    """The newest summary of every other site, and when it arrived (a summary older than `stale_after_s` is
    ignored: the site, or the link to it, is gone)."""

    def __init__(self, stale_after_s: float = 30.0) -> None:
        self.stale_after_s = stale_after_s
        self.summaries: dict[str, tuple[SiteSummary, float]] = {}

    def apply(self, summary: SiteSummary, now: float) -> bool:
        """Keep `summary` unless an older router run or an older sequence number; returns whether kept."""
        held = self.summaries.get(summary.site)
        if held is not None and (summary.epoch, summary.seq) < (held[0].epoch, held[0].seq):
            return False
        self.summaries[summary.site] = (summary, now)
        return True

    def forget(self, site: str) -> None:
        self.summaries.pop(site, None)

    def forget_router(self, router_id: str) -> None:
        """A router went offline: the sites it summarised are unreachable through it."""
        for site in [site for site, (summary, _) in self.summaries.items() if summary.router_id == router_id]:
            del self.summaries[site]

    def __len__(self) -> int:
        return len(self.summaries)

    def views(self, now: float, reliability: Mapping[str, float], exclude: str | None = None) -> list[AgentView]:
        """One `site:{site}` agent per fresh summary (other than `exclude`'s), with live agents."""
        views = []
        for site, (summary, heard_at) in sorted(self.summaries.items()):
            if site == exclude or now - heard_at > self.stale_after_s:
                continue
            view = site_view(summary, reliability)
            if view is not None:
                views.append(view)
        return views


def site_view(summary: SiteSummary, reliability: Mapping[str, float]) -> AgentView | None:
    """A site as one agent: its capabilities, the share of its busy slots, its median latency, its reward."""
    entries = [entry for entry in summary.entries if entry.agents_live > 0]
    if not entries:
        return None
    slots = sum(entry.slots for entry in entries)
    free = sum(entry.free_slots for entry in entries)
    agents = sum(entry.agents_live for entry in entries)
    latency = sum(entry.latency_p50_ms * entry.agents_live for entry in entries) / agents
    announced = sum(entry.reliability * entry.agents_live for entry in entries) / agents
    agent_id = site_agent_id(summary.site)
    capabilities = tuple(sorted({entry.capability for entry in entries if entry.capability != GENERAL}))
    return AgentView(
        agent_id=agent_id,
        node_id=summary.router_id,
        capabilities=capabilities,
        persona=" ".join(sorted({entry.model for entry in entries})),
        load=1.0 - free / slots if slots else 1.0,
        latency_ms=latency,
        available=free > 0,
        reliability=reliability.get(agent_id, announced),
        site=summary.site,
    )
