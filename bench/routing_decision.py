"""Microseconds per routing decision: Top-L screening, LinUCB select and update.

Run with `python -m bench.routing_decision`. For each fleet size the fleet's dynamic state (load, latency)
changes every decision; requirement texts cycle through a small set, as the same subtask text is screened
once per CoT run. Also reports LinUCB alone over all agents as arms, and the cold cost of a new text.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from router.capabilities import CAPABILITIES, text_vector
from router.linucb import LinUCBPolicy, context_features
from router.screening import AgentView, screen

REQUIREMENTS = (
    "Compute 17 * 23 and check the result",
    "Write a Python function that parses a CSV line",
    "Summarize the following paragraph in two sentences",
    "Who discovered penicillin and when?",
)


def make_fleet(size: int, rng: np.random.Generator) -> list[AgentView]:
    """A fleet of agents with two random capabilities each."""
    fleet = []
    for index in range(size):
        tags = tuple(str(tag) for tag in rng.choice(CAPABILITIES, size=2, replace=False))
        fleet.append(AgentView(f"agent-{index:02d}", f"node-{index % 8}", tags, f"specialist in {tags[0]}"))
    return fleet


def with_state(fleet: list[AgentView], loads: np.ndarray, latencies: np.ndarray) -> list[AgentView]:
    """The same fleet with fresh dynamic state, as the registry would hand it to the router."""
    return [
        AgentView(a.agent_id, a.node_id, a.capabilities, a.persona, load, latency)
        for a, load, latency in zip(fleet, loads.tolist(), latencies.tolist(), strict=True)
    ]


def decide(views: list[AgentView], requirement: str, policy: LinUCBPolicy, rng: np.random.Generator) -> None:
    """One decision: screen to Top-3, build contexts, select, and learn a reward."""
    candidates = screen(views, requirement, top_l=3)
    by_id = {view.agent_id: view for view in views}
    contexts = {}
    for candidate in candidates:
        view = by_id[candidate.agent_id]
        contexts[candidate.agent_id] = context_features(
            candidate.match,
            candidate.prior,
            candidate.stability,
            view.load,
            view.latency_ms,
            view.available,
            view.reliability,
            "medium",
        )
    chosen = policy.select(contexts, rng).arm
    policy.update(chosen, contexts[chosen], 1.0)


def time_per_call(action: Callable[[int], None], repeats: int) -> float:
    """Median over 5 batches of the microseconds per call of action(iteration)."""
    batches = []
    for _ in range(5):
        start = time.perf_counter()
        for iteration in range(repeats):
            action(iteration)
        batches.append((time.perf_counter() - start) / repeats * 1e6)
    return float(np.median(batches))


def bench_fleet(size: int, repeats: int = 2000) -> tuple[float, float]:
    """µs per full decision and µs per LinUCB select+update over all agents as arms."""
    rng = np.random.default_rng(7)
    fleet = make_fleet(size, rng)
    states = [with_state(fleet, rng.random(size), rng.random(size) * 3000) for _ in range(64)]
    policy = LinUCBPolicy()
    decision = time_per_call(
        lambda i: decide(states[i % 64], REQUIREMENTS[i % len(REQUIREMENTS)], policy, rng), repeats
    )
    contexts = [{view.agent_id: rng.random(8) for view in fleet} for _ in range(16)]
    bandit = LinUCBPolicy()

    def select_and_update(iteration: int) -> None:
        context = contexts[iteration % 16]
        chosen = bandit.select(context, rng).arm
        bandit.update(chosen, context[chosen], 0.5)

    return decision, time_per_call(select_and_update, repeats)


GOAL_US_64 = 100.0


def measure(sizes: tuple[int, ...] = (16, 64)) -> dict[str, object]:
    """Timings of a routing decision per fleet size, and of one cold text vector."""
    fleets = {}
    for size in sizes:
        decision, bandit = bench_fleet(size)
        fleets[str(size)] = {"decision_us": round(decision, 1), "linucb_all_arms_us": round(bandit, 1)}
    texts = [f"Compute {n} * {n + 1} and explain each step carefully" for n in range(2000)]
    start = time.perf_counter()
    for text in texts:
        text_vector(text)
    cold_us = (time.perf_counter() - start) / len(texts) * 1e6
    return {"fleets": fleets, "cold_text_vector_us": round(cold_us, 1), "goal_us_64_agents": GOAL_US_64}


def print_summary(result: dict[str, Any]) -> None:
    print("agents  decision_us(screen+select+update)  linucb_all_arms_us(select+update)")
    for size, figures in result["fleets"].items():
        print(f"{int(size):6d}  {figures['decision_us']:33.1f}  {figures['linucb_all_arms_us']:33.1f}")
    print(f"cold text vector for a new requirement: {result['cold_text_vector_us']:.1f} us")
    if "64" in result["fleets"]:
        decision = result["fleets"]["64"]["decision_us"]
        verdict = "met" if decision <= GOAL_US_64 else "MISSED"
        print(f"64 agents: {decision:.1f} us per decision (goal <= {GOAL_US_64:g} us: {verdict})")


def main() -> None:
    """Print the table of timings."""
    print_summary(measure())


if __name__ == "__main__":
    main()
