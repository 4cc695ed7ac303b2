"""The fleet's figures, pure functions of the driver's records.

    alone    one record per (item, agent): each agent asked directly
    routed   one record per task through the router: the agents whose ballots counted, whether it was right

Cost: every run costs its agent's `cost_per_1k_tokens` x tokens / 1000. Tokens are those the agent reported
for that item when asked alone (a routed run of the same item by the same agent sends the same prompt).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Record = Mapping[str, Any]


def accuracy(records: Sequence[Record]) -> float:
    return sum(bool(r["correct"]) for r in records) / len(records) if records else float("nan")


def per_agent_accuracy(alone: Sequence[Record], benchmark: str | None = None) -> dict[str, float]:
    """Each agent's accuracy alone (on one benchmark when given)."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in alone:
        if benchmark is None or record["benchmark"] == benchmark:
            groups[record["agent"]].append(record)
    return {agent: accuracy(records) for agent, records in sorted(groups.items())}


def best_agent(alone: Sequence[Record], benchmark: str | None = None) -> str:
    """The agent with the highest accuracy alone (ties: the first by name)."""
    scores = per_agent_accuracy(alone, benchmark)
    return max(sorted(scores), key=lambda agent: scores[agent])


def oracle_accuracy(alone: Sequence[Record]) -> float:
    """Share of items that at least one agent answered right (a router that always picks a right agent)."""
    right: dict[int, bool] = defaultdict(bool)
    for record in alone:
        right[record["index"]] |= bool(record["correct"])
    return sum(right.values()) / len(right) if right else float("nan")


def token_table(alone: Sequence[Record]) -> dict[tuple[str, str], int]:
    return {(record["agent"], record["item_id"]): int(record["tokens"]) for record in alone}


def run_cost(agent: str, item_id: str, prices: Mapping[str, float], tokens: Mapping[tuple[str, str], int]) -> float:
    return prices.get(agent, 0.0) * tokens.get((agent, item_id), 0) / 1000.0


def cost_per_correct(
    records: Sequence[Record], prices: Mapping[str, float], tokens: Mapping[tuple[str, str], int]
) -> tuple[float, float]:
    """(total cost, cost per correct answer) of routed records: every ballot's run is paid for."""
    total = sum(run_cost(agent, r["item_id"], prices, tokens) for r in records for agent in r["agents"])
    correct = sum(bool(r["correct"]) for r in records)
    return total, (total / correct if correct else float("nan"))


def alone_cost(
    alone: Sequence[Record], agent: str, prices: Mapping[str, float], tokens: Mapping[tuple[str, str], int]
) -> tuple[float, float]:
    """(total cost, cost per correct answer) of one agent answering every item."""
    mine = [r for r in alone if r["agent"] == agent]
    total = sum(run_cost(agent, r["item_id"], prices, tokens) for r in mine)
    correct = sum(bool(r["correct"]) for r in mine)
    return total, (total / correct if correct else float("nan"))


def oracle_cost(
    alone: Sequence[Record], prices: Mapping[str, float], tokens: Mapping[tuple[str, str], int]
) -> tuple[float, float]:
    """The oracle must ask every agent to know who is right: it pays for all of them."""
    total = sum(run_cost(r["agent"], r["item_id"], prices, tokens) for r in alone)
    correct = oracle_accuracy(alone) * len({r["index"] for r in alone})
    return total, (total / correct if correct else float("nan"))


def share_to_best(routed: Sequence[Record], best: Mapping[str, str], window: int = 20) -> dict[str, list[float]]:
    """Per benchmark, the rolling share (over its last `window` tasks) of tasks whose chosen agent was the best
    agent alone on that benchmark: the router's regret over time is 1 minus this."""
    hits: dict[str, list[float]] = defaultdict(list)
    for record in routed:
        agents = record["agents"]
        hits[record["benchmark"]].append(1.0 if agents and agents[0] == best.get(record["benchmark"]) else 0.0)
    return {benchmark: rolling(values, window).tolist() for benchmark, values in sorted(hits.items())}


def rolling(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean over the last `window` values (fewer at the start)."""
    data = np.asarray(values, dtype=float)
    sums = np.concatenate([[0.0], np.cumsum(data)])
    ends = np.arange(1, data.size + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / np.maximum(1, ends - starts)


def tasks_to_reroute(routed: Sequence[Record], killed: str, kill_at: int) -> int:
    """Tasks from the kill until the router last dispatched a run to the killed agent (0: it never did)."""
    last = -1
    for position, record in enumerate(routed[kill_at:]):
        if killed in record.get("dispatched", ()):
            last = position
    return last + 1


def tasks_to_recover(
    routed: Sequence[Record], kill_at: int, target: float, window: int = 10, sustain: int = 5
) -> int | None:
    """Tasks from the kill until the rolling accuracy (last `window` tasks, all after the kill) stays at or above
    `target` for `sustain` tasks in a row; None when it never does."""
    after = [1.0 if record["correct"] else 0.0 for record in routed[kill_at:]]
    run = 0
    for position in range(window - 1, len(after)):
        run = run + 1 if np.mean(after[position - window + 1 : position + 1]) >= target else 0
        if run >= sustain:
            return position - sustain + 2
    return None


def runs_per_task(records: Sequence[Record]) -> float:
    """The mean number of ballots counted per task (a vote stops once the runs still out cannot change it)."""
    return sum(len(r["agents"]) for r in records) / len(records) if records else float("nan")


def tokens_per_task(records: Sequence[Record], tokens: Mapping[tuple[str, str], int]) -> float:
    """The mean tokens per task, every ballot's run counted (tokens as the agent reported them alone)."""
    total = sum(tokens.get((agent, r["item_id"]), 0) for r in records for agent in r["agents"])
    return total / len(records) if records else float("nan")


def against_baseline(fleet: Sequence[Record], baseline: Sequence[Record]) -> dict[str, Any]:
    """The fleet's routed vote against the self-consistency baseline on the same items: accuracies, the margin
    in accuracy points (fleet minus baseline) and whether the fleet is ahead."""
    fleet_accuracy, baseline_accuracy = accuracy(fleet), accuracy(baseline)
    margin = fleet_accuracy - baseline_accuracy
    return {
        "fleet_accuracy": fleet_accuracy,
        "baseline_accuracy": baseline_accuracy,
        "margin": margin,
        "fleet_beats_baseline": bool(margin > 0),
    }


def task_share(routed: Sequence[Record]) -> dict[str, dict[str, float]]:
    """Per benchmark, the share of chosen runs that went to each agent."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for record in routed:
        for agent in record["agents"][:1]:
            counts[record["benchmark"]][agent] += 1
    return {
        benchmark: {agent: count / sum(per.values()) for agent, count in sorted(per.items())}
        for benchmark, per in sorted(counts.items())
    }
