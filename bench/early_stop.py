"""Tokens generated per voted task, with and without cancelling the runs an early-stopped vote leaves behind.

Run with `edge-agent bench early-stop [--tasks N] [--slow llamacpp|echo]` (or `python -m bench.early_stop`).

Three agents vote on each task (cot_count 3): two fast echo agents that agree at once, and one slow agent, by
default llama.cpp with the bundled SmolLM2 (up to 256 tokens). Two agreeing ballots decide the vote, so the
router stops early. With cancel (the default) the router sends a RunCancel and the slow agent stops within a
token; without it (RouterConfig.cancel_runs = False, the old behaviour) the slow agent generates its whole reply
for nothing and holds its slot meanwhile. Reported per setting: tokens generated per task over all agents, the
slow agent's share, and how long its slot stayed busy after the answer. Broker: mosquitto, in its own process;
nodes and router run in this process so their token counters can be read.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.fabric_overhead import broker

QUESTION = "A shop sells pens at 6 each. How much do 7 pens cost? Explain your reasoning in detail."
SLOW_MAX_TOKENS = 256
IDLE_WAIT_S = 120.0


def _workers(slow: str) -> tuple[list[Any], Any]:
    from edge_agent.backends.echo import EchoBackend
    from edge_agent.runtime.worker import AgentProfile, AgentWorker

    def profile(agent_id: str) -> AgentProfile:
        return AgentProfile(agent_id, "math", "You are a careful math solver.", ("math",), 1, 4, 256, 0.0, 1.0)

    fast = [AgentWorker(profile(f"fast-{n}"), EchoBackend(delay_s=0.2, answer="42"), "fast-node") for n in (1, 2)]
    if slow == "llamacpp":
        from edge_agent.backends.llamacpp import LlamaCppBackend
        from model_store import default_model_path

        backend: Any = LlamaCppBackend(default_model_path(), n_ctx=1024, n_threads=1)
    else:
        backend = EchoBackend(delay_s=4.0, answer="42")
    return fast, AgentWorker(profile("slow-1"), backend, "slow-node")


async def _run_setting(url: str, cancel: bool, tasks: int, slow_kind: str, state_dir: Path) -> dict[str, Any]:
    from edge_agent.runtime.node import EdgeNode, NodeSettings
    from router.service import RouterConfig, RouterService
    from shared.client import FabricTaskClient
    from shared.config import ConnectionSettings

    connection = ConnectionSettings(fabric=f"early-{uuid.uuid4().hex[:6]}", brokers=(url,))
    fast, slow = _workers(slow_kind)
    nodes = [
        EdgeNode(NodeSettings("fast-node", connection, state_dir, duplicate_wait_s=0.1), fast),
        EdgeNode(NodeSettings("slow-node", connection, state_dir, duplicate_wait_s=0.1), [slow]),
    ]
    router = RouterService(RouterConfig(router_id=f"r-{cancel}", connection=connection, cancel_runs=cancel))
    for node in nodes:
        await node.start()
    await router.start()
    workers = [*fast, slow]
    per_task, slow_tokens, busy_after = [], [], []
    try:
        while len(router.live_agents()) < 3:
            await asyncio.sleep(0.05)
        async with FabricTaskClient(connection) as client:
            for _ in range(tasks):
                before, slow_before = sum(w.tokens_generated for w in workers), slow.tokens_generated
                answer = await client.submit(
                    QUESTION, cot_count=3, top_l=3, max_tokens=SLOW_MAX_TOKENS, temperature=0.0, deadline_s=120
                )
                if len(answer.subtasks[0].ballots) != 2:
                    raise RuntimeError("the vote did not stop early: the benchmark measures nothing")
                answered = time.monotonic()
                deadline = answered + IDLE_WAIT_S
                while any(w.in_flight or w.waiting for w in workers) and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                busy_after.append(time.monotonic() - answered)
                per_task.append(sum(w.tokens_generated for w in workers) - before)
                slow_tokens.append(slow.tokens_generated - slow_before)
    finally:
        await router.stop()
        for node in nodes:
            await node.stop()
    return {
        "cancel": cancel,
        "tokens_per_task": round(statistics.mean(per_task), 1),
        "slow_agent_tokens_per_task": round(statistics.mean(slow_tokens), 1),
        "slow_slot_busy_after_answer_s": round(statistics.median(busy_after), 3),
    }


def measure(tasks: int = 5, slow: str = "llamacpp", broker_kind: str = "mosquitto") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="early-stop-") as temporary, broker(broker_kind, Path(temporary)) as url:

        async def both() -> list[dict[str, Any]]:
            return [await _run_setting(url, cancel, tasks, slow, Path(temporary)) for cancel in (True, False)]

        with_cancel, without = asyncio.run(both())
    saved = 1 - with_cancel["tokens_per_task"] / without["tokens_per_task"] if without["tokens_per_task"] else 0.0
    return {"slow_agent": slow, "tasks": tasks, "with_cancel": with_cancel, "without_cancel": without,
            "tokens_saved": round(saved, 3)}  # fmt: skip


def print_summary(result: dict[str, Any]) -> None:
    print(f"voted tasks (cot_count 3, early stop after 2 agreeing ballots), slow agent {result['slow_agent']}, "
          f"{result['tasks']} task(s) per setting")  # fmt: skip
    print(f"  {'':16} {'tokens/task':>12} {'slow agent':>11} {'slot busy after answer':>24}")
    for label, key in (("cancel (new)", "with_cancel"), ("no cancel (old)", "without_cancel")):
        row = result[key]
        print(f"  {label:16} {row['tokens_per_task']:12.1f} {row['slow_agent_tokens_per_task']:11.1f} "
              f"{row['slow_slot_busy_after_answer_s']:22.3f} s")  # fmt: skip
    print(f"  tokens saved by cancel: {result['tokens_saved']:.0%}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--slow", choices=["llamacpp", "echo"], default="llamacpp")
    arguments = parser.parse_args(argv)
    print_summary(measure(arguments.tasks, arguments.slow))


if __name__ == "__main__":
    main()
