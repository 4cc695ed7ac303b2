"""Weighted majority voting over CoT answers and over plans.

Answers: ballots are grouped by canonical answer; a ballot weighs its agent's learned reliability (or a
default weight). The heaviest group wins; ties go to the larger total stated confidence, then to the group
whose first ballot came earliest. Empty answers never win unless every ballot is empty. Voting may stop
early once the runs still out cannot change the winner.

Plans: as in the seed, each candidate chain weighs the mean Top-L score of its steps (optionally times the
planner's reliability); identical plans (after normalising their steps) pool their weight.

Chains (plan_mode chains): each executed chain votes its final answer with its weight (the mean Top-L score of
the agents that answered its steps); the heaviest answer wins, and the heaviest chain giving it (the earliest on
a tie) is the one answered, as in the seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Ballot:
    """One run's vote: the agent, its canonical and raw answer, its stated confidence, its arrival order."""

    agent_id: str
    canonical: str
    raw: str = ""
    confidence: float | None = None
    order: int = 0


@dataclass(frozen=True)
class VoteOutcome:
    """The winning answer with the weight of every answer group and the winner's lead over the runner-up."""

    winner: str
    winner_raw: str
    weights: dict[str, float]
    support: int
    margin: float
    ballots: tuple[Ballot, ...] = field(default=())


@dataclass(frozen=True)
class PlanCandidate:
    """A plan proposed by one planner, with a screening score per step (mean Top-L score of the step)."""

    planner_id: str
    steps: tuple[str, ...]
    step_scores: tuple[float, ...] = ()


@dataclass
class _Group:
    """Running totals of one answer group."""

    weight: float = 0.0
    confidence: float = 0.0
    first: Ballot | None = None
    count: int = 0


def tally(ballots: Sequence[Ballot], reliability: Mapping[str, float], default_weight: float = 1.0) -> VoteOutcome:
    """Choose the winning answer by reliability-weighted majority (see the module docstring)."""
    groups = _group(ballots, reliability, default_weight)
    if not groups:
        return VoteOutcome(winner="", winner_raw="", weights={}, support=0, margin=0.0, ballots=tuple(ballots))
    ranked = _ranked(groups)
    winner = ranked[0]
    runner_up = groups[ranked[1]].weight if len(ranked) > 1 else 0.0
    first = groups[winner].first
    return VoteOutcome(
        winner=winner,
        winner_raw=first.raw if first is not None else "",
        weights={answer: group.weight for answer, group in groups.items()},
        support=groups[winner].count,
        margin=groups[winner].weight - runner_up,
        ballots=tuple(ballots),
    )


def can_stop_early(
    ballots: Sequence[Ballot],
    pending_weights: Sequence[float],
    reliability: Mapping[str, float],
    default_weight: float = 1.0,
) -> bool:
    """True once the runs still out (with these weights) cannot change the winner, whatever they answer."""
    outstanding = sum(max(weight, 0.0) for weight in pending_weights)
    if not pending_weights:
        return True
    groups = _group(ballots, reliability, default_weight)
    if not groups or "" in groups:
        # With no answer yet, or only empty ones, any non-empty late answer would win.
        return False
    ranked = _ranked(groups)
    runner_up = groups[ranked[1]].weight if len(ranked) > 1 else 0.0
    return groups[ranked[0]].weight > runner_up + outstanding


def vote_plans(plans: Sequence[PlanCandidate], reliability: Mapping[str, float] | None = None) -> int:
    """Return the index of the winning plan: the first plan of the heaviest group of identical plans."""
    if not plans:
        raise ValueError("vote_plans needs at least one plan")
    totals: dict[tuple[str, ...], float] = {}
    first_index: dict[tuple[str, ...], int] = {}
    for index, plan in enumerate(plans):
        key = plan_key(plan.steps)
        totals[key] = totals.get(key, 0.0) + plan_weight(plan, reliability)
        first_index.setdefault(key, index)
    best = max(totals, key=lambda key: (totals[key], -first_index[key]))
    return first_index[best]


@dataclass(frozen=True)
class ChainBallot:
    """One executed chain's final answer (canonical and raw) and its weight."""

    name: str
    canonical: str
    raw: str
    weight: float


def vote_chains(chains: Sequence[ChainBallot]) -> tuple[int, VoteOutcome]:
    """The index of the chain answered (see the module docstring) and the weighted vote over the chains."""
    if not chains:
        raise ValueError("vote_chains needs at least one chain")
    ballots = [Ballot(chain.name, chain.canonical, chain.raw, None, index) for index, chain in enumerate(chains)]
    outcome = tally(ballots, {chain.name: chain.weight for chain in chains}, default_weight=0.0)
    winners = [index for index, chain in enumerate(chains) if chain.canonical == outcome.winner]
    return max(winners, key=lambda index: (chains[index].weight, -index)), outcome


def plan_key(steps: Sequence[str]) -> tuple[str, ...]:
    """What makes two plans the same plan: their steps without case, repeated spaces or a trailing period."""
    return tuple(_normalize_step(step) for step in steps)


def plan_weight(plan: PlanCandidate, reliability: Mapping[str, float] | None = None) -> float:
    """Mean step score of a plan, times the planner's reliability when reliabilities are given."""
    mean = sum(plan.step_scores) / len(plan.step_scores) if plan.step_scores else 0.0
    if reliability is None:
        return mean
    return mean * reliability.get(plan.planner_id, 1.0)


def _group(ballots: Sequence[Ballot], reliability: Mapping[str, float], default_weight: float) -> dict[str, _Group]:
    """Sum weights and confidences per canonical answer; empty answers are kept only if all are empty."""
    counted = [ballot for ballot in ballots if ballot.canonical] or list(ballots)
    groups: dict[str, _Group] = {}
    for ballot in counted:
        group = groups.setdefault(ballot.canonical, _Group())
        group.weight += max(reliability.get(ballot.agent_id, default_weight), 0.0)
        group.confidence += ballot.confidence or 0.0
        group.count += 1
        if group.first is None or ballot.order < group.first.order:
            group.first = ballot
    return groups


def _ranked(groups: dict[str, _Group]) -> list[str]:
    """Answers best first: by weight, then total confidence, then earliest first ballot."""

    def key(answer: str) -> tuple[float, float, int]:
        group = groups[answer]
        earliest = group.first.order if group.first is not None else 0
        return (-group.weight, -group.confidence, earliest)

    return sorted(groups, key=key)


def _normalize_step(step: str) -> str:
    """Compare plan steps without case, repeated spaces or a trailing period."""
    return " ".join(step.lower().split()).rstrip(".")
