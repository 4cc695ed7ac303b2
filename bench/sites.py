"""Many sites in one process: the real routing code against a discrete-event model of S sites x B boards.

Run with `edge-agent bench sites` (or `python -m bench.sites`).

    the world   S sites of B boards, one agent each (four agent templates, each good at one kind of task),
                joined to a hub by WAN links with latency, jitter and loss (a lost message is resent after
                `resend_s`); boards run one request per slot (two slots), service times ~ lognormal; each board
                sends a state every `state_interval_s` (its load); tasks arrive at every site (Poisson), each of
                one kind; link cuts and site failures come at set times
    the routers the real code: `AgentRegistry` (the indexed fleet), `RoutingBrain` (Top-L screening, LinUCB,
                learned reliability), `SiteScopedBrain` (locality), `summary_entries` / `SummarySchedule` /
                `SiteDirectory` / `site_view` (summaries). A run that fails (a dead board, a cut link: after
                `run_timeout_s`) moves to the next candidate, as the pipeline's re-dispatch does
    modes       full: every router sees every board (every state crosses every link; today's bridges) and
                places by locality
                global: the same detail, no locality (today's routing: the best agent anywhere)
                summaries: a site router sees its own boards and the other sites' summaries; a run for another
                site goes to that site's router (the `site:{site}` agent), which places it on a board
                oracle: knows every agent's true accuracy and load, picks the best free agent anywhere

Reported per configuration: WAN messages per second per site link (state plane: beacons/states or summaries;
task plane: runs and results that cross), the share of tasks answered on their own site (of those whose site
had a fitting agent with a free slot), accuracy (expected: the true accuracy of the agent that answered) against
the oracle's, p95 task latency with the modeled link delays, CPU per routing decision and memory per router
(the registry, brain and directory one router holds, measured with tracemalloc while it is built).
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np

from router.brain import Choice, RoutingBrain
from router.candidates import LivePool
from router.capabilities import infer_requirements
from router.locality import LocalityPolicy, SiteScopedBrain, fitting_first
from router.registry import AgentRegistry
from router.summaries import SiteDirectory, SummarySchedule, summary_entries
from shared.messages import AgentInfo, NodeBeacon, SiteSummary
from shared.topics import site_of_agent

TEMPLATES = (
    (("mathematical-reasoning", "verification"), "careful arithmetic solver", "Compute 17 * 23 and verify it."),
    (("code-implementation", "debugging"), "python programmer", "Write a Python function that parses a CSV line."),
    (("writing", "summarization"), "concise writer", "Summarize this paragraph in one sentence."),
    (
        ("retrieval", "fact-checking", "analysis"),
        "research assistant",
        "Retrieve the sources on this claim and analyze them.",
    ),
)
GOOD, POOR = 0.85, 0.30  # true accuracy of an agent on its own kind of task, and on the others
MESSAGES_GOAL = 100.0  # fewer WAN messages per site with summaries, at 1,000 boards per site
OWN_SITE_GOAL = 0.95
ACCURACY_LOSS_GOAL = 0.01
SCALE_GOAL_RATIO = 1.5  # CPU per task at 100,000 boards against 5,000
DETAILED = ("full", "global")  # modes whose routers see every board
MODES = ("full", "summaries", "global", "oracle")


@dataclass(frozen=True)
class WorldConfig:
    sites: int = 4
    boards: int = 16  # per site
    tasks: int = 400
    seed: int = 1
    duration_s: float = 120.0  # tasks arrive over this much simulated time
    wan_latency_ms: float = 40.0  # one way, site to hub
    wan_jitter_ms: float = 10.0
    wan_loss: float = 0.01
    resend_s: float = 1.0
    lan_latency_ms: float = 1.0
    service_ms: float = 400.0
    slots: int = 2
    state_interval_s: float = 5.0
    summary_interval_s: float = 5.0
    run_timeout_s: float = 5.0
    hot_site_share: float = 0.0  # share of all tasks submitted at site 0 (0: spread evenly)
    cut: tuple[int, float, float] | None = None  # (site, from, to): its hub link is down
    failure: tuple[int, float, float] | None = None  # (site, from, to): every board of the site is down
    degraded_sites: int = 0  # the first sites' agents are poor at their own kind (a worse model)


@dataclass
class Figures:
    mode: str
    sites: int
    boards_per_site: int
    tasks: int
    submitted: int  # tasks whose site was up to submit them
    answered: int
    failed: int  # no candidate answered (every one was dead or cut off)
    state_messages_per_s_per_site: float
    task_messages_per_s_per_site: float
    own_site_share: float  # of tasks whose site had a fitting free agent at submission
    accuracy: float
    p95_ms: float
    p50_ms: float
    cpu_us_per_task: float
    router_memory_mb: float
    reasons: dict[str, int] = field(default_factory=dict)


# --- the world ---------------------------------------------------------------------------------------------


def agent_id(site: int, board: int) -> str:
    return f"s{site:03d}-b{board:04d}"


def site_name(site: int) -> str:
    return f"s{site:03d}"


def template_of(board: int) -> int:
    return board % len(TEMPLATES)


def info_of(site: int, board: int) -> AgentInfo:
    tags, persona, _ = TEMPLATES[template_of(board)]
    model = f"model-{template_of(board)}"
    return AgentInfo(
        agent_id=agent_id(site, board), persona=persona, capabilities=tags, backend="sim", model=model, max_in_flight=2
    )


def true_accuracy(config: WorldConfig, site: int, board: int, kind: int) -> float:
    if template_of(board) != kind:
        return POOR
    return 0.55 if site < config.degraded_sites else GOOD


class Board:
    """One board: slots busy until given times (a FIFO queue beyond them)."""

    __slots__ = ("free_at",)

    def __init__(self, slots: int) -> None:
        self.free_at = [0.0] * slots

    def start(self, now: float, service_s: float) -> float:
        """Queue a run arriving at `now`; returns when it finishes."""
        slot = min(range(len(self.free_at)), key=self.free_at.__getitem__)
        begin = max(now, self.free_at[slot])
        self.free_at[slot] = begin + service_s
        return begin + service_s


class Simulation:
    """The discrete-event loop, the links and the boards; the routing is the mode's (see `run`)."""

    def __init__(self, config: WorldConfig, mode: str) -> None:
        self.config, self.mode = config, mode
        self.rng = np.random.default_rng(config.seed)
        self.now = 0.0
        self.events: list[tuple[float, int, Callable[[], None]]] = []
        self.sequence = 0
        self.boards = [[Board(config.slots) for _ in range(config.boards)] for _ in range(config.sites)]
        self.in_flight = np.zeros((config.sites, config.boards), dtype=np.int64)  # runs queued or running
        kinds = np.arange(config.boards) % len(TEMPLATES)
        self.template = kinds
        self.accuracy = np.array(
            [
                [
                    [true_accuracy(config, site, board, kind) for kind in range(len(TEMPLATES))]
                    for board in range(config.boards)
                ]
                for site in range(config.sites)
            ]
        )
        self.state_messages = 0
        self.task_messages = 0
        self.cpu_s = 0.0
        self.decisions = 0
        self.latencies: list[float] = []
        self.accuracies: list[float] = []
        self.own_site = 0
        self.could_stay = 0
        self.reasons: dict[str, int] = {}
        self.outcomes: list[tuple[int, float, int | None]] = []  # (task's site, submitted at, answering site)

    def at(self, when: float, action: Callable[[], None]) -> None:
        self.sequence += 1
        heapq.heappush(self.events, (when, self.sequence, action))

    def run_until_empty(self) -> None:
        while self.events:
            self.now, _, action = heapq.heappop(self.events)
            action()

    # links and boards
    def link_up(self, site: int) -> bool:
        cut = self.config.cut
        return cut is None or cut[0] != site or not cut[1] <= self.now < cut[2]

    def site_up(self, site: int) -> bool:
        failure = self.config.failure
        return failure is None or failure[0] != site or not failure[1] <= self.now < failure[2]

    def wan_s(self) -> float:
        """One crossing of a site's hub link: latency, jitter, and a resend per lost message."""
        config = self.config
        delay = (config.wan_latency_ms + config.wan_jitter_ms * abs(self.rng.standard_normal())) / 1000
        while self.rng.random() < config.wan_loss:
            delay += config.resend_s
        return delay

    def path_s(self, source: int, target: int) -> float | None:
        """One message from a site to another (through the hub), None when a link on the way is down."""
        if source == target:
            return self.config.lan_latency_ms / 1000
        if not (self.link_up(source) and self.link_up(target)):
            return None
        self.task_messages += 2  # one crossing of each site's link
        return self.wan_s() + self.wan_s()

    def service_s(self) -> float:
        return self.config.service_ms / 1000 * float(self.rng.lognormal(0.0, 0.3))

    def fitting_free(self, site: int, kind: int) -> bool:
        free = (self.template == kind) & (self.in_flight[site] < self.config.slots)
        return self.site_up(site) and bool(free.any())

    def loads(self, site: int) -> np.ndarray:
        return np.minimum(1.0, self.in_flight[site] / self.config.slots)


# --- routers -------------------------------------------------------------------------------------------------


def beacon(site: int, board: int) -> NodeBeacon:
    return NodeBeacon(
        node_id=agent_id(site, board),
        epoch=1,
        instance_id="sim",
        status="online",
        agents=(info_of(site, board),),
        site=site_name(site),
    )


def fill(registry: AgentRegistry, sites: range, boards: int) -> None:
    for site in sites:
        for board in range(boards):
            registry.apply_beacon(beacon(site, board), 0.0)


def measured(build: Callable[[], Any]) -> tuple[Any, float]:
    """Build something and return it with the memory it holds (MB, tracemalloc)."""
    tracemalloc.start()
    try:
        built = build()
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return built, current / 1e6


class Routers:
    """The routers of one mode: their registries, brains and directories, and how a task is placed."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        config = sim.config
        self.policy = LocalityPolicy()
        self.brains = [RoutingBrain(seed=config.seed + site) for site in range(config.sites)]
        self.directories = [SiteDirectory(stale_after_s=3 * config.summary_interval_s) for _ in range(config.sites)]
        self.schedules = [SummarySchedule(config.summary_interval_s) for _ in range(config.sites)]
        self.memory_mb = 0.0
        self.registries: list[AgentRegistry] = []
        if sim.mode == "oracle":
            return
        beacons = [[beacon(site, board) for board in range(config.boards)] for site in range(config.sites)]

        def registry(router: int, own_beacons: bool = False) -> AgentRegistry:
            """A router's registry; `own_beacons`: decoded for it alone (as a real router holds them)."""
            built = AgentRegistry(stale_after_s=30.0)
            for site in range(config.sites) if sim.mode in DETAILED else (router,):  # every board, or its own
                for board, message in enumerate(beacons[site]):
                    built.apply_beacon(beacon(site, board) if own_beacons else message, 0.0)
            return built

        first, self.memory_mb = measured(lambda: registry(0, own_beacons=True))
        self.registries = [first] + [registry(router) for router in range(1, config.sites)]
        self.slots = [
            {site: np.array([r.index.slot(agent_id(site, b)) for b in range(config.boards)]) for site in sites}
            for r, sites in (
                (r, range(config.sites) if sim.mode in DETAILED else (i,)) for i, r in enumerate(self.registries)
            )
        ]

    # the state plane
    def apply_states(self, site: int) -> None:
        """Every board of `site` sends its state (one message each); the routers that see them apply them."""
        sim = self.sim
        if not sim.site_up(site):
            return
        routers = [site]
        if sim.mode in DETAILED:  # every router reads every board's state, where the links let it through
            others = [r for r in range(sim.config.sites) if r != site and sim.link_up(site) and sim.link_up(r)]
            sim.state_messages += sim.config.boards * (1 + len(others)) if others else 0  # out once, in at each
            routers += others
        loads = sim.loads(site)
        for router in routers:
            index, slots = self.registries[router].index, self.slots[router][site]
            index.load[slots] = loads
            index.last_seen[slots] = sim.now

    def publish_summary(self, site: int) -> None:
        sim = self.sim
        if not sim.site_up(site):
            return
        registry = self.registries[site]
        pool = registry.live_agents(sim.now, self.brains[site].reliability)
        brain = self.brains[site]
        runs = {agent: brain.policy.count(agent) for agent in brain.reliability}
        entries = summary_entries(registry.index, pool.live, brain.reliability, runs)
        if not self.schedules[site].due(entries, sim.now):
            return
        seq = self.schedules[site].published(entries, sim.now)
        summary = SiteSummary(site=site_name(site), router_id=f"router-{site}", epoch=1, seq=seq, entries=entries)
        reached = [
            other for other in range(sim.config.sites) if other != site and sim.link_up(site) and sim.link_up(other)
        ]
        sim.state_messages += (1 + len(reached)) if reached else 0
        for other in reached:
            self.directories[other].apply(summary, sim.now)

    # routing decisions
    def choose(
        self, site: int, text: str, tags: tuple[str, ...], trace: Callable[[dict[str, Any]], None]
    ) -> list[Choice]:
        sim = self.sim
        brain, registry, directory = self.brains[site], self.registries[site], self.directories[site]
        started = time.process_time()
        reliability = brain.reliability

        def site_agents(requirement: str, tags: Any, limit: int) -> list[Any]:
            if sim.mode != "summaries":
                return []
            return directory.best(sim.now, reliability, requirement, tags, limit, site_name(site))

        scoped = (
            brain if sim.mode == "global" else SiteScopedBrain(brain, site_name(site), self.policy, trace, site_agents)
        )
        choices = scoped.choose(registry.live_agents(sim.now, reliability), text, tags, 3)
        sim.cpu_s += time.process_time() - started
        sim.decisions += 1
        return choices

    def place_at_site(self, site: int, text: str, tags: tuple[str, ...]) -> list[Choice]:
        """The site router places a relayed run on one of its own boards (router/relay.py's choice)."""
        sim = self.sim
        started = time.process_time()
        pool = self.registries[site].live_agents(sim.now, self.brains[site].reliability)
        local = pool.split_by_site(site_name(site))[0] if isinstance(pool, LivePool) else pool
        choices = fitting_first(self.brains[site].choose(local, text, tags, 3))
        sim.cpu_s += time.process_time() - started
        return choices


# --- tasks -----------------------------------------------------------------------------------------------------


@dataclass
class Task:
    site: int
    kind: int
    submitted: float
    could_stay: bool
    candidates: list[str] = field(default_factory=list)
    tried: int = 0


def parse(agent: str) -> tuple[int, int]:
    return int(agent[1:4]), int(agent[6:])


class Driver:
    """Submits the tasks, runs them on boards across links, learns from their outcomes."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.routers = Routers(sim)
        self.choices: dict[int, dict[str, Choice]] = {}
        self.dispatches = 0

    def schedule(self) -> None:
        sim, config = self.sim, self.sim.config
        arrivals = np.sort(sim.rng.uniform(0.0, config.duration_s, config.tasks))
        hot = sim.rng.random(config.tasks) < config.hot_site_share
        sites = np.where(hot, 0, sim.rng.integers(0, config.sites, config.tasks))
        kinds = sim.rng.integers(0, len(TEMPLATES), config.tasks)
        for when, site, kind in zip(arrivals.tolist(), sites.tolist(), kinds.tolist(), strict=True):
            sim.at(when, partial(self.submit, site, kind))
        if sim.mode == "oracle":
            return
        for site in range(config.sites):
            offset = config.state_interval_s * site / config.sites  # states spread over the interval
            for tick in np.arange(offset, config.duration_s, config.state_interval_s).tolist():
                sim.at(tick, partial(self.routers.apply_states, site))
            if sim.mode == "summaries":
                for tick in np.arange(offset, config.duration_s, 1.0).tolist():
                    sim.at(tick, partial(self.routers.publish_summary, site))

    def submit(self, site: int, kind: int) -> None:
        sim = self.sim
        if not sim.site_up(site):
            return  # the site is down: its clients with it
        task = Task(site, kind, sim.now, sim.fitting_free(site, kind))
        _, _, text = TEMPLATES[kind]
        if sim.mode == "oracle":
            task.candidates = self.oracle(task)
        else:
            traces: list[dict[str, Any]] = []
            choices = self.routers.choose(site, text, tuple(infer_requirements(text)), traces.append)
            self.choices[id(task)] = {choice.agent_id: choice for choice in choices}
            task.candidates = [choice.agent_id for choice in choices]
            for trace in traces:
                sim.reasons[trace["reason"]] = sim.reasons.get(trace["reason"], 0) + 1
        self.dispatch(task)

    def oracle(self, task: Task) -> list[str]:
        sim, config = self.sim, self.sim.config
        reachable = np.array(
            [
                sim.site_up(site) and (site == task.site or (sim.link_up(site) and sim.link_up(task.site)))
                for site in range(config.sites)
            ]
        )
        free = (sim.in_flight < config.slots) & reachable[:, None]
        score = np.where(free, sim.accuracy[:, :, task.kind], -1.0)
        score[task.site] += 1e-6  # among equals, stay at home
        flat = np.argsort(-score, axis=None, kind="stable")[:3]
        return [agent_id(int(i) // config.boards, int(i) % config.boards) for i in flat if score.flat[i] >= 0]

    def dispatch(self, task: Task) -> None:
        if task.tried >= len(task.candidates):
            self.choices.pop(id(task), None)
            return  # failed: no candidate left
        agent = task.candidates[task.tried]
        task.tried += 1
        target_site = site_of_agent(agent)
        if target_site is not None:  # a site agent: the site's router places it
            self.relay(task, int(target_site[1:]))
        else:
            site, board = parse(agent)
            self.run_on(task, agent, site, board, task.site)

    def relay(self, task: Task, site: int) -> None:
        sim = self.sim
        there = sim.path_s(task.site, site)
        if there is None or not sim.site_up(site):
            sim.at(sim.now + sim.config.run_timeout_s, lambda: self.failed(task, None))
            return
        _, _, text = TEMPLATES[task.kind]

        def arrive() -> None:
            choices = self.routers.place_at_site(site, text, tuple(infer_requirements(text)))
            if not choices:
                sim.at(sim.now + sim.config.run_timeout_s, lambda: self.failed(task, None))
                return
            _, board = parse(choices[0].agent_id)
            site_agent = f"site:{site_name(site)}"
            self.run_on(task, site_agent, site, board, site, relayed_from=task.site, credited=site_agent)

        sim.at(sim.now + there, arrive)

    def run_on(
        self,
        task: Task,
        agent: str,
        site: int,
        board: int,
        sender: int,
        relayed_from: int | None = None,
        credited: str | None = None,
    ) -> None:
        sim = self.sim
        there = sim.path_s(sender, site)
        if there is None or not sim.site_up(site):
            sim.at(sim.now + sim.config.run_timeout_s, lambda: self.failed(task, credited or agent))
            return
        self.dispatches += 1

        def start() -> None:
            finish = sim.boards[site][board].start(sim.now, sim.service_s())
            sim.in_flight[site, board] += 1
            sim.at(finish, done)

        def done() -> None:
            sim.in_flight[site, board] -= 1
            back = sim.path_s(site, sender)
            if relayed_from is not None and back is not None:
                onward = sim.path_s(sender, relayed_from)
                back = None if onward is None else back + onward
            if back is None:
                sim.at(sim.now + sim.config.run_timeout_s, lambda: self.failed(task, credited or agent))
                return
            sim.at(sim.now + back, lambda: self.answered(task, credited or agent, site, board))

        sim.at(sim.now + there, start)

    def answered(self, task: Task, agent: str, site: int, board: int) -> None:
        sim = self.sim
        accuracy = float(sim.accuracy[site, board, task.kind])
        sim.latencies.append(sim.now - task.submitted)
        sim.outcomes.append((task.site, task.submitted, site))
        sim.accuracies.append(accuracy)
        if task.could_stay:
            sim.could_stay += 1
            sim.own_site += site == task.site
        self.learn(task, agent, float(sim.rng.random() < accuracy))

    def failed(self, task: Task, agent: str | None) -> None:
        if agent is not None:
            self.learn(task, agent, 0.0, final=False)
        if task.tried >= len(task.candidates):
            self.sim.outcomes.append((task.site, task.submitted, None))
        self.dispatch(task)

    def learn(self, task: Task, agent: str, reward: float, final: bool = True) -> None:
        choices = self.choices.get(id(task), {})
        choice = choices.get(agent)
        if choice is not None:
            brain = self.routers.brains[task.site]
            dispatch = f"{id(task)}.{task.tried}"
            brain.record_dispatch(dispatch, choice)
            brain.learn(dispatch, reward)
        if final:
            self.choices.pop(id(task), None)


def simulate(config: WorldConfig, mode: str) -> Figures:
    """One configuration in one mode."""
    return run_simulation(config, mode)[0]


def run_simulation(config: WorldConfig, mode: str) -> tuple[Figures, Simulation]:
    """One configuration in one mode: the figures, and the simulation (its outcomes, for tests)."""
    sim = Simulation(config, mode)
    driver = Driver(sim)
    driver.schedule()
    sim.run_until_empty()
    if mode == "summaries":  # what router 0 holds of the other sites: their summaries, indexed line by line
        driver.routers.memory_mb += measured(lambda: copied(driver.routers.directories[0]))[1]
    seconds = config.duration_s
    latencies = np.array(sim.latencies) * 1000 if sim.latencies else np.zeros(1)
    figures = Figures(
        mode=mode,
        sites=config.sites,
        boards_per_site=config.boards,
        tasks=config.tasks,
        submitted=len(sim.outcomes),
        answered=len(sim.latencies),
        failed=sum(1 for *_, answered in sim.outcomes if answered is None),
        state_messages_per_s_per_site=round(sim.state_messages / seconds / config.sites, 3),
        task_messages_per_s_per_site=round(sim.task_messages / seconds / config.sites, 3),
        own_site_share=round(sim.own_site / sim.could_stay, 4) if sim.could_stay else 1.0,
        accuracy=round(float(np.mean(sim.accuracies)) if sim.accuracies else 0.0, 4),
        p95_ms=round(float(np.percentile(latencies, 95)), 1),
        p50_ms=round(float(np.percentile(latencies, 50)), 1),
        cpu_us_per_task=round(sim.cpu_s / max(1, sim.decisions) * 1e6, 1),
        router_memory_mb=round(driver.routers.memory_mb, 2),
        reasons=dict(sorted(sim.reasons.items())),
    )
    return figures, sim


def copied(directory: SiteDirectory) -> SiteDirectory:
    """A directory holding copies of the summaries another holds (decoded anew, as a router would)."""
    fresh = SiteDirectory(directory.stale_after_s)
    for summary, heard_at in directory.summaries.values():
        fresh.apply(SiteSummary.model_validate_json(summary.model_dump_json()), heard_at)
    return fresh


def full_state_messages_per_s_per_site(config: WorldConfig) -> float:
    """What full bridges carry per site link at the state cadence, without cuts: out B, in (S-1) B per interval."""
    return config.sites * config.boards / config.state_interval_s


# --- the report ----------------------------------------------------------------------------------------------


def measure(configurations: list[WorldConfig], modes: tuple[str, ...]) -> dict[str, Any]:
    rows = []
    for config in configurations:
        for mode in modes:
            if mode in DETAILED and config.sites * config.boards > 20_000:
                continue  # every router holding every board: measured up to 20,000 boards (see the docs)
            started = time.perf_counter()
            figures = simulate(config, mode)
            row = {**asdict(figures), "config": _config_text(config), "wall_s": round(time.perf_counter() - started, 1)}
            rows.append(row)
            print(_row_text(row), file=sys.stderr, flush=True)
    result: dict[str, Any] = {"rows": rows, "goals": goals(rows, configurations)}
    sizes = sorted((c for c in configurations if _plain(c) and "summaries" in modes), key=lambda c: c.sites * c.boards)
    if len(sizes) >= 2 and sizes[-1].sites * sizes[-1].boards >= 100_000 and sizes[0].sites * sizes[0].boards <= 5_000:
        costs = interleaved_decision_cost(sizes[0], sizes[-1])
        ratio = costs[1] / costs[0]
        result["decision_cpu_us"] = {_config_text(sizes[0]): costs[0], _config_text(sizes[-1]): costs[1]}
        result["goals"].append(
            {
                "goal": f"CPU per routing decision, interleaved ({_config_text(sizes[-1])} / {_config_text(sizes[0])})",
                "figure": round(ratio, 2),
                "target": f"<= {SCALE_GOAL_RATIO:g}x",
                "met": ratio <= SCALE_GOAL_RATIO,
            }
        )
    return result


def _plain(config: WorldConfig) -> bool:
    return not (config.cut or config.failure or config.hot_site_share or config.degraded_sites)


def interleaved_decision_cost(
    small: WorldConfig, large: WorldConfig, rounds: int = 5, per_round: int = 100
) -> tuple[float, float]:
    """CPU microseconds per routing decision of two worlds' warmed-up routers, timed in alternating rounds so
    that the machine's load falls on both alike (the in-run figures are taken minutes apart)."""
    routers = []
    for config in (small, large):
        sim = Simulation(replace(config, tasks=300, duration_s=30.0), "summaries")
        driver = Driver(sim)
        driver.schedule()
        sim.run_until_empty()
        routers.append((driver.routers, config.sites))
    requests = [(text, tuple(infer_requirements(text))) for _, _, text in TEMPLATES]
    totals = [0.0, 0.0]
    for _ in range(rounds):
        for which, (router, sites) in enumerate(routers):
            started = time.process_time()
            for number in range(per_round):
                router.choose(number % sites, *requests[number % len(requests)], lambda data: None)
            totals[which] += time.process_time() - started
    return (round(totals[0] / (rounds * per_round) * 1e6, 1), round(totals[1] / (rounds * per_round) * 1e6, 1))


def _config_text(config: WorldConfig) -> str:
    parts = [f"{config.sites}x{config.boards}"]
    if config.hot_site_share:
        parts.append(f"hot {config.hot_site_share:.0%}")
    if config.cut:
        parts.append(f"cut s{config.cut[0]} {config.cut[1]:g}-{config.cut[2]:g}s")
    if config.failure:
        parts.append(f"site s{config.failure[0]} down {config.failure[1]:g}-{config.failure[2]:g}s")
    if config.degraded_sites:
        parts.append(f"{config.degraded_sites} degraded")
    return ", ".join(parts)


def goals(rows: list[dict[str, Any]], configurations: list[WorldConfig]) -> list[dict[str, Any]]:
    """Each goal with the figures it is judged on."""
    found = []

    def row(config: str, mode: str) -> dict[str, Any] | None:
        return next((r for r in rows if r["config"] == config and r["mode"] == mode), None)

    for config in configurations:
        text = _config_text(config)
        full, summaries, oracle = row(text, "full"), row(text, "summaries"), row(text, "oracle")
        unplaced = row(text, "global")
        if summaries is None:
            continue
        full_rate = full["state_messages_per_s_per_site"] if full else full_state_messages_per_s_per_site(config)
        if config.boards >= 1000 and not (config.cut or config.failure):
            ratio = full_rate / max(summaries["state_messages_per_s_per_site"], 1e-9)
            found.append(
                {
                    "goal": f"WAN state messages/s per site, full / summaries ({text})",
                    "figure": round(ratio, 1),
                    "target": f">= {MESSAGES_GOAL:g}x",
                    "met": ratio >= MESSAGES_GOAL,
                }
            )
        if oracle is not None and not (config.degraded_sites or config.hot_site_share):  # stress worlds: shown only
            share, loss = summaries["own_site_share"], oracle["accuracy"] - summaries["accuracy"]
            found.append(
                {
                    "goal": f"own-site share ({text})",
                    "figure": share,
                    "target": f">= {OWN_SITE_GOAL:.0%}",
                    "met": share >= OWN_SITE_GOAL,
                }
            )
            found.append(
                {
                    "goal": f"accuracy loss against the oracle ({text})",
                    "figure": round(loss, 4),
                    "target": f"<= {ACCURACY_LOSS_GOAL:g}",
                    "met": loss <= ACCURACY_LOSS_GOAL,
                }
            )
            if unplaced is not None:  # what locality itself costs: the same routers, placing anywhere
                cost = unplaced["accuracy"] - summaries["accuracy"]
                found.append(
                    {
                        "goal": f"accuracy loss against routing without locality ({text})",
                        "figure": round(cost, 4),
                        "target": f"<= {ACCURACY_LOSS_GOAL:g}",
                        "met": cost <= ACCURACY_LOSS_GOAL,
                    }
                )
    by_size = {
        r["sites"] * r["boards_per_site"]: r
        for r in rows
        if r["mode"] == "summaries"
        and "cut" not in r["config"]
        and "down" not in r["config"]
        and "hot" not in r["config"]
        and "degraded" not in r["config"]
    }
    if by_size and max(by_size) >= 100_000 and min(by_size) <= 5_000:
        small, large = by_size[min(by_size)], by_size[max(by_size)]
        memory = large["router_memory_mb"] / max(small["router_memory_mb"], 1e-9)
        found.append(
            {
                "goal": f"memory per router, {max(by_size):,} boards / {min(by_size):,}",
                "figure": round(memory, 2),
                "target": f"<= {SCALE_GOAL_RATIO:g}x",
                "met": memory <= SCALE_GOAL_RATIO,
            }
        )
    return found


def _row_text(row: dict[str, Any]) -> str:
    return (
        f"{row['config']:<34} {row['mode']:<9} WAN/s/site state {row['state_messages_per_s_per_site']:>9.2f} "
        f"task {row['task_messages_per_s_per_site']:>6.2f}  own site {row['own_site_share']:6.1%}  "
        f"accuracy {row['accuracy']:.3f}  p50 {row['p50_ms']:>7.1f} ms  p95 {row['p95_ms']:>7.1f} ms  "
        f"cpu/task {row['cpu_us_per_task']:>7.1f} us  router {row['router_memory_mb']:>7.2f} MB  "
        f"answered {row['answered']}/{row['submitted']}"
    )


def print_summary(result: dict[str, Any]) -> None:
    print("edge-agent bench sites: the real routing code over a discrete-event model of many sites")
    for row in result["rows"]:
        print(_row_text(row))
        if row["reasons"]:
            print(f"{'':<34} placements: {', '.join(f'{k} {v}' for k, v in row['reasons'].items())}")
    print()
    for config, cost in result.get("decision_cpu_us", {}).items():
        print(f"  CPU per routing decision, interleaved rounds, {config}: {cost} us")
    for goal in result["goals"]:
        mark = "met" if goal["met"] else "MISSED"
        print(f"  {goal['goal']}: {goal['figure']} (goal {goal['target']}): {mark}")


def standard_configurations(tasks: int, seed: int, quick: bool) -> list[WorldConfig]:
    """The configurations the goals are judged on (quick: small ones, for a smoke run)."""
    if quick:
        return [
            WorldConfig(sites=4, boards=16, tasks=tasks, seed=seed),
            WorldConfig(sites=4, boards=16, tasks=tasks, seed=seed, cut=(0, 30.0, 70.0)),
        ]
    return [
        WorldConfig(sites=10, boards=1000, tasks=tasks, seed=seed),
        WorldConfig(sites=5, boards=1000, tasks=tasks, seed=seed),
        WorldConfig(sites=100, boards=1000, tasks=tasks, seed=seed),
        WorldConfig(sites=10, boards=8, tasks=3 * tasks, seed=seed, hot_site_share=0.6),
        WorldConfig(sites=10, boards=1000, tasks=tasks, seed=seed, cut=(0, 30.0, 70.0), failure=(1, 50.0, 90.0)),
        WorldConfig(sites=10, boards=8, tasks=3 * tasks, seed=seed, degraded_sites=1),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args(argv)
    result = measure(standard_configurations(arguments.tasks, arguments.seed, arguments.quick), MODES)
    print(json.dumps(result, indent=2)) if arguments.json else print_summary(result)


if __name__ == "__main__":
    main()
