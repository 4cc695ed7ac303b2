"""The fleet as screening reads it: per-agent arrays kept up to date as beacons and states arrive.

A routing decision used to rebuild one `AgentView` per agent of the fleet, stack their profiles and score
them all in Python; its cost grew with the fleet. `FleetIndex` keeps what screening needs in numpy arrays,
one slot per agent, updated in place by the registry:

    slot ─► node online, last heard of, load, latency, available, profile id
    profile id ─► the (capabilities, persona) profile: capability-tag indicator row and text vector

Agents with the same capabilities and persona share one profile (a fleet runs a few agent templates), so a
requirement is matched once per profile, not once per agent, and tags are indexed in the profile rows.
`LivePool` is the live, available view at one instant: screening over it is a handful of vectorised numpy
calls (a mask, a gather, the stability term, a partition), and only the Top-L chosen agents become
`AgentView`s. Priors are looked up only for agents that have outcomes when the prior source says which
(`known_agents`); every other agent has the default prior by definition.

Pure: no I/O, the caller passes the time.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from router.capabilities import agent_profile, match_scores
from shared.messages import AgentInfo

DEFAULT_PRIOR = 0.5
DEFAULT_RELIABILITY = 0.5
_SMALL_TIE = 64  # ties among at most this many contenders are broken by sorting their ids directly


@dataclass(frozen=True, slots=True)
class AgentView:
    """What the router knows about one agent when screening: static capabilities and dynamic state."""

    agent_id: str
    node_id: str
    capabilities: tuple[str, ...]
    persona: str = ""
    load: float = 0.0
    latency_ms: float = 0.0
    available: bool = True
    reliability: float = 0.5
    cost_per_1k_tokens: float = 0.0
    site: str | None = None  # where the agent's node lives (None: the default site)
    observations: int = 0  # a site agent's: the rewards its site learned its reliability from
    constraints: tuple[str, ...] = ()  # the output constraint kinds its backend honours


class ProfileTable:
    """Distinct (capabilities, persona) profiles, stacked for matching, with a per-requirement match cache."""

    def __init__(self) -> None:
        self._ids: dict[tuple[tuple[str, ...], str], int] = {}
        self._tags: list[np.ndarray] = []
        self._texts: list[np.ndarray] = []
        self._stacked: tuple[np.ndarray, np.ndarray] | None = None
        self._matches: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._tags)

    def profile_id(self, capabilities: tuple[str, ...], persona: str) -> int:
        key = (capabilities, persona)
        found = self._ids.get(key)
        if found is not None:
            return found
        profile = agent_profile(capabilities, persona)
        self._ids[key] = len(self._tags)
        self._tags.append(profile.tags)
        self._texts.append(profile.text)
        self._stacked = None
        self._matches.clear()
        return self._ids[key]

    def matches(self, requirement_text: str, required_tags: tuple[str, ...]) -> np.ndarray:
        """The match score of every profile for a requirement (cached until a new profile appears)."""
        key = (requirement_text, required_tags)
        found = self._matches.get(key)
        if found is not None:
            return found
        if self._stacked is None:
            self._stacked = (np.stack(self._tags), np.stack(self._texts))
        scores = match_scores(requirement_text, required_tags, *self._stacked)
        if len(self._matches) >= 256:
            self._matches.clear()
        self._matches[key] = scores
        return scores


class FleetIndex:
    """One slot per known agent of an online node; arrays grow by doubling and free slots are reused."""

    def __init__(self, capacity: int = 64) -> None:
        self.profiles = ProfileTable()
        self._slots: dict[str, int] = {}
        self._free: list[int] = []
        self.agent_ids: list[str] = []
        self.node_ids: list[str] = []
        self.infos: list[AgentInfo | None] = []
        self.used = np.zeros(capacity, dtype=bool)
        self.last_seen = np.zeros(capacity)
        self.load = np.zeros(capacity)
        self.latency = np.zeros(capacity)
        self.available = np.ones(capacity, dtype=bool)
        self.profile = np.zeros(capacity, dtype=np.int64)
        self.site = np.zeros(capacity, dtype=np.int64)  # site code (0: the default site), see `site_code`
        self.line = np.zeros(capacity, dtype=np.int64)  # (capabilities, model) line of the site summaries
        self.capacity = np.zeros(capacity, dtype=np.int64)  # max_in_flight
        self.line_ids: dict[tuple[tuple[str, ...], str], int] = {}
        self._site_codes: dict[str | None, int] = {None: 0}
        self._site_names: list[str | None] = [None]
        self._rank: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._slots

    def slot(self, agent_id: str) -> int | None:
        return self._slots.get(agent_id)

    def site_code(self, site: str | None) -> int:
        """The small integer that stands for a site in the `site` array (new sites get the next one)."""
        code = self._site_codes.get(site)
        if code is None:
            code = self._site_codes[site] = len(self._site_names)
            self._site_names.append(site)
        return code

    def site_name(self, slot: int) -> str | None:
        return self._site_names[int(self.site[slot])]

    def add(self, info: AgentInfo, node_id: str, now: float, site: str | None = None) -> int:
        """Index an agent of an online node with the default state (idle, available); replaces an earlier entry."""
        self.remove(info.agent_id)
        slot = self._free.pop() if self._free else self._new_slot()
        persona = f"{info.persona} {info.description}".strip()
        self._slots[info.agent_id] = slot
        self.agent_ids[slot], self.node_ids[slot], self.infos[slot] = info.agent_id, node_id, info
        self.used[slot] = True
        self.last_seen[slot] = now
        self.load[slot], self.latency[slot], self.available[slot] = 0.0, 0.0, True
        self.profile[slot] = self.profiles.profile_id(tuple(info.capabilities), persona)
        self.site[slot] = self.site_code(site)
        self.line[slot] = self.line_ids.setdefault((tuple(info.capabilities), info.model), len(self.line_ids))
        self.capacity[slot] = info.max_in_flight
        self._rank = None
        return slot

    def remove(self, agent_id: str) -> None:
        slot = self._slots.pop(agent_id, None)
        if slot is None:
            return
        self.used[slot] = False
        self.agent_ids[slot], self.node_ids[slot], self.infos[slot] = "", "", None
        self._free.append(slot)
        self._rank = None

    def update(self, agent_id: str, load: float, latency_ms: float, available: bool) -> bool:
        slot = self._slots.get(agent_id)
        if slot is None:
            return False
        self.load[slot], self.latency[slot], self.available[slot] = load, latency_ms, available
        return True

    def touch(self, slots: Sequence[int], now: float) -> None:
        """The node of these slots was heard of at `now`."""
        if len(slots) == 1:
            self.last_seen[slots[0]] = now
        elif slots:
            self.last_seen[list(slots)] = now

    def live_mask(self, now: float, stale_after_s: float) -> np.ndarray:
        return self.used & (self.last_seen >= now - stale_after_s)

    def id_rank(self) -> np.ndarray:
        """Each slot's position in agent-id order (ties in score go to the smaller id); rebuilt after changes."""
        if self._rank is None:
            rank = np.zeros(len(self.used), dtype=np.int64)
            ordered = sorted(self._slots.items())
            rank[[slot for _, slot in ordered]] = np.arange(len(ordered))
            self._rank = rank
        return self._rank

    def view(self, slot: int, reliability: Mapping[str, float]) -> AgentView:
        info = self.infos[slot]
        assert info is not None
        return AgentView(
            agent_id=info.agent_id,
            node_id=self.node_ids[slot],
            capabilities=info.capabilities,
            persona=f"{info.persona} {info.description}".strip(),
            load=float(self.load[slot]),
            latency_ms=float(self.latency[slot]),
            available=bool(self.available[slot]),
            reliability=reliability.get(info.agent_id, DEFAULT_RELIABILITY),
            cost_per_1k_tokens=info.cost_per_1k_tokens or 0.0,
            site=self.site_name(slot),
            constraints=info.constraints,
        )

    def _new_slot(self) -> int:
        slot = len(self.agent_ids)
        if slot >= len(self.used):
            self._grow()
        self.agent_ids.append("")
        self.node_ids.append("")
        self.infos.append(None)
        return slot

    def _grow(self) -> None:
        size = 2 * len(self.used)
        for name in ("used", "last_seen", "load", "latency", "available", "profile", "site", "line", "capacity"):
            old = getattr(self, name)
            new = np.zeros(size, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)
        self._rank = None


class LivePool(Sequence[Any]):
    """The live agents at one instant, as a sequence of `AgentView`s built on demand, and a fast screen."""

    def __init__(self, fleet: FleetIndex, now: float, stale_after_s: float, reliability: Mapping[str, float]):
        self.fleet = fleet
        self.reliability = reliability
        self.live = np.flatnonzero(fleet.live_mask(now, stale_after_s))
        self._views: list[Any] | None = None

    def __len__(self) -> int:
        return len(self.live)

    def split_by_site(self, site: str | None) -> tuple[LivePool, LivePool]:
        """(the live agents at `site`, those elsewhere): two views over the same index, for locality."""
        inside = self.fleet.site[self.live] == self.fleet.site_code(site)
        return self._restricted(self.live[inside]), self._restricted(self.live[~inside])

    def _restricted(self, slots: np.ndarray) -> LivePool:
        pool = LivePool.__new__(LivePool)
        pool.fleet, pool.reliability, pool.live, pool._views = self.fleet, self.reliability, slots, None
        return pool

    @overload
    def __getitem__(self, position: int) -> Any: ...
    @overload
    def __getitem__(self, position: slice) -> list[Any]: ...
    def __getitem__(self, position: int | slice) -> Any:
        return self._all()[position]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._all())

    def _all(self) -> list[Any]:
        if self._views is None:
            self._views = [self.fleet.view(int(slot), self.reliability) for slot in self.live]
        return self._views

    def views_of(self, agent_ids: Iterable[str]) -> dict[str, Any]:
        """The views of some agents, built for those alone."""
        found = {}
        for agent_id in agent_ids:
            slot = self.fleet.slot(agent_id)
            if slot is not None:
                found[agent_id] = self.fleet.view(slot, self.reliability)
        return found

    def screen(
        self,
        requirement_text: str,
        required_tags: tuple[str, ...],
        prior: Any,
        benchmark: str,
        difficulty: str,
        top_l: int,
        weights: Any,
    ) -> list[tuple[str, float, float, float, float]]:
        """Top-L (agent id, match, prior, stability, score) over the available live agents, best first."""
        fleet = self.fleet
        slots = self.live[fleet.available[self.live]]
        if top_l < 1 or not slots.size:
            return []
        matches = fleet.profiles.matches(requirement_text, required_tags)[fleet.profile[slots]]
        priors = self._priors(slots, prior, benchmark, difficulty)
        load = np.minimum(np.maximum(fleet.load[slots], 0.0), 1.0)
        responsive = np.minimum(np.maximum(fleet.latency[slots], 0.0), weights.latency_cap_ms) / weights.latency_cap_ms
        stabilities = (weights.idle + weights.responsive + weights.available) - (
            weights.idle * load + weights.responsive * responsive
        )
        scores = weights.match * matches + weights.prior * priors + weights.stability * stabilities
        order = self._top_order(slots, scores, top_l)
        return [
            (fleet.agent_ids[slots[i]], float(matches[i]), float(priors[i]), float(stabilities[i]), float(scores[i]))
            for i in order
        ]

    def _priors(self, slots: np.ndarray, prior: Any, benchmark: str, difficulty: str) -> np.ndarray:
        priors = np.full(len(slots), DEFAULT_PRIOR)
        if prior is None:
            return priors
        known = _known_agents(prior)
        if known is None or len(known) > len(slots):  # ask the source about every candidate
            ids = [self.fleet.agent_ids[slot] for slot in slots]
            values = [prior.get(i, DEFAULT_PRIOR) for i in ids] if isinstance(prior, Mapping) else None
            if values is None:
                values = [prior(i, benchmark, difficulty) for i in ids]
            return np.minimum(np.maximum(np.array(values, dtype=float), 0.0), 1.0)
        for agent_id in known:
            slot = self.fleet.slot(agent_id)
            if slot is None:
                continue
            position = int(np.searchsorted(slots, slot))
            if position < len(slots) and slots[position] == slot:
                value = prior[agent_id] if isinstance(prior, Mapping) else prior(agent_id, benchmark, difficulty)
                priors[position] = min(max(float(value), 0.0), 1.0)
        return priors

    def _top_order(self, slots: np.ndarray, scores: np.ndarray, top_l: int) -> list[int]:
        """Positions of the L best scores, ties broken by agent id."""
        if len(scores) > top_l:
            threshold = np.partition(scores, len(scores) - top_l)[len(scores) - top_l]
            contenders = np.flatnonzero(scores >= threshold)
        else:
            contenders = np.arange(len(scores))
        if len(contenders) <= _SMALL_TIE:
            ids = self.fleet.agent_ids
            ranked = sorted(contenders.tolist(), key=lambda i: (-scores[i], ids[slots[i]]))
            return ranked[:top_l]
        rank = self.fleet.id_rank()[slots[contenders]]
        return contenders[np.lexsort((rank, -scores[contenders]))][:top_l].tolist()


def _known_agents(prior: Any) -> Collection[str] | None:
    """The agents whose prior may differ from the default, when the source can say (else None)."""
    if isinstance(prior, Mapping):
        return prior.keys()
    known: Callable[[], Collection[str]] | None = getattr(prior, "known_agents", None)
    return known() if known is not None else None
