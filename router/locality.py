"""Where a subtask runs: at the submitter's site, unless there is a reason to cross a WAN link.

    live agents ─► here (the task's site) | elsewhere (other sites' agents, and the site agents of the
                   summaries that routers elsewhere publish, router/summaries.py)
    each side screened and ordered as usual (Top-L, LinUCB) ─► `place`:
        no local agent fits the requirement as well as one elsewhere   ─► elsewhere  "no_local_agent"
        every fitting local agent is loaded past the threshold          ─► elsewhere  "local_loaded"
        the learned reward elsewhere beats the best local one by more
        than the link's cost                                            ─► elsewhere  "remote_reward"
        otherwise                                                       ─► here       "local_qualifies"
        (nothing elsewhere)                                             ─► here       "no_remote_agent"

A site agent that this router has not yet learned enough about is judged by the reward its own site's router
learned of the agents behind it (the summary's reliability, and how many rewards it rests on), so a site whose
own agents serve poorly sends its tasks where they are served well, without exploring across the link first.

The decision goes into the task's trace (a `placed` event: which side, why, and the figures it compared). A
site cut off from its hub sees no agent elsewhere, so it keeps answering its own tasks with its own agents.
Task ownership follows the same rule: the routers at the task's site own it when one of them is live.

`place` is pure; `SiteScopedBrain` is a task's view of the router's brain that the pipeline calls unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from router.brain import Choice, RoutingBrain
from router.candidates import LivePool
from router.ownership import rendezvous_owner
from router.screening import AgentView
from shared.messages import RouterPresence

Scope = Literal["local", "remote"]
SiteAgents = Callable[[str, Sequence[str], int], Sequence[AgentView]]
"""(requirement, tags, limit) -> the best sites' agents (router/summaries.py, `SiteDirectory.best`)."""
Reason = Literal["local_qualifies", "no_local_agent", "local_loaded", "remote_reward", "no_remote_agent"]
_IDLE, _RELIABILITY = 4, 6  # positions of idleness and learned reliability in the LinUCB context (linucb.py)


@dataclass(frozen=True)
class LocalityPolicy:
    """When a router crosses a WAN link: local agents loaded past `load_threshold` (a fraction), a reward
    elsewhere better by more than `link_cost` (reward units), or no local agent whose match is within
    `match_slack` of the best match elsewhere."""

    load_threshold: float = 0.8
    link_cost: float = 0.25
    match_slack: float = 0.1
    min_observations: int = 10  # rewards learned from fewer runs than this do not move a task across a link

    def __post_init__(self) -> None:
        if not 0.0 <= self.load_threshold <= 1.0 or self.link_cost < 0.0 or self.match_slack < 0.0:
            raise ValueError("load_threshold must be in [0, 1]; link_cost and match_slack must be non-negative")


@dataclass(frozen=True, slots=True)
class Option:
    """One screened candidate as the placement sees it."""

    agent_id: str
    match: float
    load: float
    reward: float  # the learned reliability (an average of the agent's rewards)
    observations: int = 0  # how many rewards it was learned from


@dataclass(frozen=True)
class Placement:
    """Which side a subtask runs on, and why (with the figures compared, for the trace)."""

    scope: Scope
    reason: Reason
    local_best: Option | None = None
    remote_best: Option | None = None
    fitting: frozenset[str] = frozenset()  # the local candidates that fit as well as any elsewhere

    def trace(self, site: str | None) -> dict[str, Any]:
        data: dict[str, Any] = {"site": site, "scope": self.scope, "reason": self.reason}
        for side, option in (("local", self.local_best), ("remote", self.remote_best)):
            if option is not None:
                data[side] = {
                    "agent": option.agent_id,
                    "match": round(option.match, 3),
                    "load": round(option.load, 3),
                    "reward": round(option.reward, 3),
                }
        return data


def place(local: Sequence[Option], remote: Sequence[Option], policy: LocalityPolicy) -> Placement:
    """Decide local or remote for one subtask from the screened candidates of each side (best first)."""
    remote_best = max(remote, key=lambda option: option.reward, default=None)
    if not remote:
        return Placement("local", "no_remote_agent", _best(local), None)
    best_match = max(option.match for option in remote)
    fitting = [option for option in local if option.match >= best_match - policy.match_slack]
    if not fitting:
        return Placement("remote", "no_local_agent", _best(local), remote_best)
    unloaded = [option for option in fitting if option.load < policy.load_threshold]
    if not unloaded:
        return Placement("remote", "local_loaded", _best(fitting), remote_best)
    local_best = _best(unloaded)
    known = [option for option in remote if option.observations >= policy.min_observations]
    assert local_best is not None and remote_best is not None
    if known and _best(known).reward - policy.link_cost > local_best.reward:  # type: ignore[union-attr]
        return Placement("remote", "remote_reward", local_best, _best(known))
    ids = frozenset(option.agent_id for option in unloaded)
    return Placement("local", "local_qualifies", local_best, remote_best, ids)


def _best(options: Sequence[Option]) -> Option | None:
    return max(options, key=lambda option: option.reward, default=None)


def option_of(choice: Choice, brain: RoutingBrain) -> Option:
    """The placement's view of a screened choice (its load and its learned reward are in the LinUCB context)."""
    idle, reward = float(choice.x[_IDLE]), float(choice.x[_RELIABILITY])
    return Option(choice.agent_id, choice.screening.match, 1.0 - idle, reward, brain.policy.count(choice.agent_id))


def split_by_site(agents: Sequence[AgentView], site: str | None) -> tuple[Sequence[AgentView], Sequence[AgentView]]:
    """(the agents at `site`, the agents elsewhere)."""
    if isinstance(agents, LivePool):
        return agents.split_by_site(site)
    return [a for a in agents if a.site == site], [a for a in agents if a.site != site]


class SiteScopedBrain(RoutingBrain):
    """The router's brain as one task at one site sees it: `choose` screens each side and places the subtask.

    Everything else (learning, weights, the ledger) is the router's own brain, shared by every task.
    """

    def __init__(
        self,
        brain: RoutingBrain,
        site: str | None,
        policy: LocalityPolicy,
        emit: Callable[[dict[str, Any]], None],
        site_agents: SiteAgents = lambda requirement, tags, limit: (),
    ) -> None:
        # No super().__init__: every attribute not set here is the shared brain's (see __getattr__).
        self.__dict__["_brain"] = brain
        self._site, self._policy, self._emit, self._site_agents = site, policy, emit, site_agents

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_brain"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            self.__dict__[name] = value
        else:
            setattr(self.__dict__["_brain"], name, value)

    def choose(self, agents: Sequence[AgentView], requirement: str, *args: Any, **kwargs: Any) -> list[Choice]:
        brain: RoutingBrain = self.__dict__["_brain"]
        here, elsewhere = split_by_site(agents, self._site)
        local = brain.choose(here, requirement, *args, **kwargs) if len(here) else []
        remote = brain.choose(elsewhere, requirement, *args, **kwargs) if len(elsewhere) else []
        top_l = args[1] if len(args) > 1 else kwargs.get("top_l", 3)
        summarised = self._site_agents(requirement, _tags(args, kwargs), 2 * top_l)
        if summarised:
            remote = sorted(remote + brain.choose(summarised, requirement, *args, **kwargs), key=lambda c: -c.ucb)
        announced = {view.agent_id: view for view in summarised}
        options = (
            [option_of(c, brain) for c in local],
            [_remote(c, brain, announced, self._policy.min_observations) for c in remote],
        )
        placement = place(*options, self._policy)
        if remote or self._site is not None:
            self._emit(placement.trace(self._site))
        if placement.scope == "remote":
            return remote + local
        if not placement.fitting:
            return local  # nothing elsewhere: the local order as LinUCB gave it
        # The local agents that fit (LinUCB's order), then the other sites', then the local ones that fit less.
        return (
            [c for c in local if c.agent_id in placement.fitting]
            + remote
            + [c for c in local if c.agent_id not in placement.fitting]
        )


def fitting_first(choices: Sequence[Choice], slack: float = LocalityPolicy.match_slack) -> list[Choice]:
    """The choices whose match is within `slack` of the best first (LinUCB's order kept within each group): a
    site router placing a relayed run puts it on a board that fits, as the router that sent it expected."""
    best = max((choice.screening.match for choice in choices), default=0.0)
    fit = [choice for choice in choices if choice.screening.match >= best - slack]
    return fit + [choice for choice in choices if choice.screening.match < best - slack]


def _remote(choice: Choice, brain: RoutingBrain, announced: Mapping[str, AgentView], minimum: int) -> Option:
    """A remote choice's option; for a site this router knows too little of, the reward its site learned."""
    option = option_of(choice, brain)
    view = announced.get(choice.agent_id)
    if view is None or option.observations >= minimum:
        return option
    return Option(option.agent_id, option.match, option.load, view.reliability, view.observations)


def _tags(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Sequence[str]:
    return args[0] if args else kwargs.get("tags", ())


def site_owners(site: str | None, presences: Mapping[str, RouterPresence]) -> list[str]:
    """The live routers that may own a task of `site`: those at the site when one is live, else every live one."""
    live = sorted(router_id for router_id, presence in presences.items() if presence.status == "online")
    if site is None:
        return live
    at_site = [router_id for router_id in live if presences[router_id].site == site]
    return at_site or live


def task_owner(task_id: str, site: str | None, presences: Mapping[str, RouterPresence]) -> str | None:
    """The router that owns a task (rendezvous hashing over `site_owners`)."""
    return rendezvous_owner(task_id, site_owners(site, presences))
