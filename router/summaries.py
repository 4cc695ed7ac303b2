"""Per-site summaries: what crosses the WAN links instead of every board's beacon and state.

A site router summarises its site per (capabilities, model) line: live agents, run slots, free slots, latency
percentiles (of the agents' latency averages) and learned reliability. It publishes the summary, retained, on
`site/{site}/summary` every `interval_s` and when it changes materially (an agent comes or goes, a line runs out
of free slots or gets some back, or its free share moves by a quarter), at most once per `min_gap_s`. Board
states change every few seconds; a summary changes when the site does, so the WAN carries a few messages per
site instead of one per board.

Routers elsewhere keep the newest summary per site (`SiteDirectory`) and see each line as a view of one agent,
`site:{site}`: the line's capabilities, the share of its busy slots, its median latency. For a requirement the
directory gives the best line of each of the best sites (`SiteDirectory.best`), so a site is one candidate (one
LinUCB arm) that fits as well as its best agents do. A run sent to that agent reaches the site's router, which
places it on a board (router/relay.py).

Pure: the caller passes the time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from router.candidates import DEFAULT_RELIABILITY, FleetIndex, LivePool
from router.screening import AgentView, ScreeningWeights
from shared.messages import AgentInfo, CapabilitySummary, SiteSummary
from shared.topics import site_agent_id

LineKey = tuple[tuple[str, ...], str, int, int, int]


def summary_entries(
    fleet: FleetIndex,
    slots: Iterable[int] | np.ndarray,
    reliability: Mapping[str, float],
    runs: Mapping[str, int] | None = None,
) -> tuple[CapabilitySummary, ...]:
    """The (capabilities, model) lines of the agents in `slots` of the index (the live agents of one site).

    Vectorised over the index's arrays: a summary of 1,000 boards costs a few numpy calls per line.
    """
    slots = np.asarray(slots, dtype=np.int64)
    if not slots.size:
        return ()
    lines, inverse = np.unique(fleet.line[slots], return_inverse=True)
    capacity = fleet.capacity[slots]
    free = np.where(fleet.available[slots], np.rint(capacity * (1.0 - np.clip(fleet.load[slots], 0.0, 1.0))), 0)
    rewards = np.full(len(slots), DEFAULT_RELIABILITY)
    learned = np.zeros(len(slots))
    if reliability:
        position = {int(slot): index for index, slot in enumerate(slots.tolist())}
        for agent_id, value in reliability.items():
            slot = fleet.slot(agent_id)
            index = position.get(slot) if slot is not None else None
            if index is not None:
                rewards[index] = value
                learned[index] = (runs or {}).get(agent_id, 0)
    agents = np.bincount(inverse, minlength=len(lines))
    slot_totals = np.bincount(inverse, weights=capacity, minlength=len(lines))
    free_totals = np.bincount(inverse, weights=free, minlength=len(lines))
    reward_totals = np.bincount(inverse, weights=rewards, minlength=len(lines))
    run_totals = np.bincount(inverse, weights=learned, minlength=len(lines))
    # A line's reliability: its agents' learned reliability weighted by the rewards each rests on (the plain
    # mean while nothing is learned), so agents never tried do not dilute what the site knows.
    weighted_totals = np.bincount(inverse, weights=rewards * learned, minlength=len(lines))
    names = {line_id: key for key, line_id in fleet.line_ids.items()}
    entries = []
    for number, line_id in enumerate(lines.tolist()):
        capabilities, model = names[line_id]
        p50, p95 = np.percentile(fleet.latency[slots[inverse == number]], [50, 95])
        entries.append(
            CapabilitySummary(
                capabilities=capabilities[:32],
                model=model[:256],
                agents_live=int(agents[number]),
                slots=int(slot_totals[number]),
                free_slots=int(free_totals[number]),
                latency_p50_ms=round(float(p50), 1),
                latency_p95_ms=round(float(p95), 1),
                reliability=round(
                    min(max(_line_reward(number, reward_totals, weighted_totals, run_totals, agents), 0.0), 1.0), 4
                ),
                runs=int(run_totals[number]),
            )
        )
    return tuple(sorted(entries, key=lambda entry: (entry.capabilities, entry.model)))


def _line_reward(number: int, rewards: np.ndarray, weighted: np.ndarray, runs: np.ndarray, agents: np.ndarray) -> float:
    if runs[number] > 0:
        return float(weighted[number] / runs[number])
    return float(rewards[number] / agents[number])


def material_key(entries: Iterable[CapabilitySummary]) -> tuple[LineKey, ...]:
    """What makes a summary worth sending before its schedule: agents, slots, and free slots by quarter."""
    return tuple((e.capabilities, e.model, e.agents_live, e.slots, _quarter(e.free_slots, e.slots)) for e in entries)


def _quarter(free: int, slots: int) -> int:
    """0 when nothing is free, else 1..4: the quarter of the slots that is free (rounded up)."""
    return 0 if free <= 0 or slots <= 0 else min(4, 1 + (4 * free - 1) // slots)


class SummarySchedule:
    """When to publish: every `interval_s`, and on a material change at most once per `min_gap_s`."""

    def __init__(self, interval_s: float, min_gap_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.min_gap_s = min(min_gap_s, interval_s)
        self.last_key: tuple[LineKey, ...] | None = None
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
    ignored: the site, or the link to it, is gone).

    Every line of every summary is a slot of a `FleetIndex` of its own (its site, capabilities, load, latency),
    so finding the sites that fit a requirement is the same handful of vectorised numpy calls as screening
    boards: a router's cost per decision stays flat as sites are added.
    """

    def __init__(self, stale_after_s: float = 30.0) -> None:
        self.stale_after_s = stale_after_s
        self.summaries: dict[str, tuple[SiteSummary, float]] = {}
        self.lines = FleetIndex()
        self._line_ids: dict[str, list[str]] = {}  # site -> the index ids of its lines
        self._line_of: dict[str, tuple[str, int]] = {}  # index id -> (site, entry number)
        self._numbers: dict[str, int] = {}  # site -> a short number for its index ids

    def apply(self, summary: SiteSummary, now: float) -> bool:
        """Keep `summary` when it is newer (router run, then sequence number) than the one held; returns whether
        kept. The same summary again is a retained copy replayed by a restarted broker or a reconnected bridge,
        not news from the site: it does not make the site fresh (the link to it may still be down)."""
        held = self.summaries.get(summary.site)
        if held is not None and (summary.epoch, summary.seq) <= (held[0].epoch, held[0].seq):
            return False
        self.summaries[summary.site] = (summary, now)
        self._index(summary, now)
        return True

    def _index(self, summary: SiteSummary, now: float) -> None:
        number = self._numbers.setdefault(summary.site, len(self._numbers))
        old = self._line_ids.get(summary.site, [])
        ids = []
        for position, entry in enumerate(summary.entries):
            line_id = f"line-{number}-{position}"
            slot = self.lines.slot(line_id)
            info = self.lines.infos[slot] if slot is not None else None
            if info is None or info.capabilities != entry.capabilities or info.model != entry.model:
                info = AgentInfo(
                    agent_id=line_id,
                    capabilities=entry.capabilities,
                    backend="site",
                    model=entry.model,
                    max_in_flight=min(1024, max(1, entry.slots)),
                )
                slot = self.lines.add(info, summary.router_id, now, summary.site)
            assert slot is not None
            load = 1.0 - entry.free_slots / entry.slots if entry.slots else 1.0
            self.lines.update(line_id, load, entry.latency_p50_ms, entry.free_slots > 0 and entry.agents_live > 0)
            self.lines.touch([slot], now)
            self._line_of[line_id] = (summary.site, position)
            ids.append(line_id)
        for line_id in set(old) - set(ids):
            self.lines.remove(line_id)
            self._line_of.pop(line_id, None)
        self._line_ids[summary.site] = ids

    def forget(self, site: str) -> None:
        self.summaries.pop(site, None)
        for line_id in self._line_ids.pop(site, []):
            self.lines.remove(line_id)
            self._line_of.pop(line_id, None)

    def forget_router(self, router_id: str) -> None:
        """A router went offline: the sites it summarised are unreachable through it."""
        for site in [site for site, (summary, _) in self.summaries.items() if summary.router_id == router_id]:
            self.forget(site)

    def __len__(self) -> int:
        return len(self.summaries)

    def views(self, now: float, reliability: Mapping[str, float], exclude: str | None = None) -> list[AgentView]:
        """Every line of every fresh summary (but `exclude`'s) as a view of its site's agent."""
        views = []
        for site, (summary, heard_at) in sorted(self.summaries.items()):
            if site != exclude and now - heard_at <= self.stale_after_s:
                views += site_views(summary, reliability)
        return views

    def best(
        self,
        now: float,
        reliability: Mapping[str, float],
        requirement: str,
        tags: Sequence[str],
        limit: int,
        exclude: str | None = None,
    ) -> list[AgentView]:
        """The `limit` sites (but `exclude`) whose best line screens best for a requirement, one view each."""
        pool = LivePool(self.lines, now, self.stale_after_s, {})
        if exclude is not None:
            pool = pool.split_by_site(exclude)[1]
        if not len(pool) or limit < 1:
            return []
        # The best `limit` x (most lines of a site) lines hold the best line of at least `limit` sites.
        widest = max(len(ids) for ids in self._line_ids.values())
        found = pool.screen(requirement, tuple(tags), None, "", "", limit * widest, ScreeningWeights())
        best: dict[str, AgentView] = {}
        for line_id, *_ in found:
            site, position = self._line_of[line_id]
            if site not in best:
                summary = self.summaries[site][0]
                best[site] = _line_view(summary, summary.entries[position], reliability)
                if len(best) == limit:
                    break
        return list(best.values())


def site_views(summary: SiteSummary, reliability: Mapping[str, float] | None = None) -> list[AgentView]:
    """Each line of a summary with live agents as a view of the site's agent (`site:{site}`)."""
    return [_line_view(summary, entry, reliability or {}) for entry in summary.entries if entry.agents_live > 0]


def _line_view(summary: SiteSummary, entry: CapabilitySummary, reliability: Mapping[str, float]) -> AgentView:
    agent_id = site_agent_id(summary.site)
    return AgentView(
        agent_id=agent_id,
        node_id=summary.router_id,
        capabilities=entry.capabilities,
        persona=entry.model,
        load=1.0 - entry.free_slots / entry.slots if entry.slots else 1.0,
        latency_ms=entry.latency_p50_ms,
        available=entry.free_slots > 0 and entry.agents_live > 0,
        reliability=entry.reliability,  # what the site learned (this router's own learning is in its brain)
        site=summary.site,
        observations=entry.runs,
    )
