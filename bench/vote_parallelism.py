"""Does a k-way CoT vote cost one model call of wall time? Fixed-delay echo agents, k = 1, 3 and 5.

Run with `python -m bench.vote_parallelism [--delay 0.5] [--repeats 5] [--broker mosquitto|amqtt]`.

One broker process, one node (`edge-agent start`) hosting five echo agents that each sleep `--delay` seconds
per run, one router (`edge-agent router`). A task with cot_count k runs k calls on k distinct agents; if they
run in parallel the vote takes about one call. Reported: median wall time per k and the ratio to k = 1
(goal: <= 1.3x). The seed ran its "parallel" CoT calls one after another (ratio k).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.fabric_overhead import broker, processes, wait_until_routed

AGENTS = 5


async def vote_wall_times(connection: object, ks: list[int], repeats: int) -> dict[int, list[float]]:
    """Wall time (s) of `repeats` tasks per k, interleaved so drift hits every k alike."""
    from shared.client import FabricTaskClient

    times: dict[int, list[float]] = {k: [] for k in ks}
    async with FabricTaskClient(connection) as client:  # type: ignore[arg-type]
        for _ in range(repeats):
            for k in ks:
                started = time.perf_counter()
                answer = await client.submit("What is 6 * 7?", cot_count=k, top_l=AGENTS, deadline_s=60)
                times[k].append(time.perf_counter() - started)
                ballots = len(answer.subtasks[0].ballots)
                if ballots < min(k, 2):
                    raise RuntimeError(f"k={k}: only {ballots} ballots")
    return times


GOAL_RATIO = 1.3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.5, help="Seconds each echo call takes.")
    parser.add_argument("--repeats", type=int, default=5, help="Tasks per k.")
    parser.add_argument("--broker", choices=["mosquitto", "amqtt"], default="mosquitto")
    arguments = parser.parse_args(argv)
    print_summary(measure(arguments.delay, arguments.repeats, arguments.broker))


def measure(delay: float = 0.5, repeats: int = 5, broker_kind: str = "mosquitto") -> dict[str, Any]:
    """Median wall time of a k-way vote (k = 1, 3, 5) over fixed-delay echo agents, and its ratio to k = 1."""
    from shared.config import ConnectionSettings

    arguments = argparse.Namespace(delay=delay, repeats=repeats, broker=broker_kind)

    ks = [1, 3, 5]
    with (
        tempfile.TemporaryDirectory(prefix="vote-parallelism-") as temporary,
        broker(arguments.broker, Path(temporary)) as url,
    ):
        directory = Path(temporary)
        fabric = f"vote-{uuid.uuid4().hex[:6]}"
        agent = {"preset": "math", "backend": "echo", "backend_settings": {"delay_s": arguments.delay, "answer": "42"}}
        config = directory / "node.yaml"
        config.write_text(json.dumps({"agents": [agent] * AGENTS}))
        env = dict(os.environ, SYMPHONY_EDGE_STATE_DIR=str(directory / "state"))
        cli = [sys.executable, "-m", "edge_agent.cli"]
        common = ["--broker", url, "--fabric", fabric]
        node = [*cli, "start", "-c", str(config), "--node-id", "vote-node", *common]
        router = [*cli, "router", "--router-id", "vote-router", *common]
        connection = ConnectionSettings(fabric=fabric, brokers=(url,))
        with processes(node, router, env=env):

            async def scenario() -> dict[int, list[float]]:
                await wait_until_routed(connection)
                return await vote_wall_times(connection, ks, arguments.repeats)

            times = asyncio.run(scenario())
    single = statistics.median(times[1])
    walls = {str(k): round(statistics.median(times[k]), 4) for k in ks}
    ratios = {str(k): round(statistics.median(times[k]) / single, 3) for k in ks}
    return {"broker": broker_kind, "delay_s": delay, "repeats": repeats, "wall_s": walls, "ratio_to_single": ratios}


def print_summary(result: dict[str, Any]) -> None:
    print(f"k-way vote over echo agents of {result['delay_s']:g} s ({result['broker']}, median of {result['repeats']})")
    print(f"  {'k':>2} {'wall s':>8} {'ratio to k=1':>13}")
    for k, wall in result["wall_s"].items():
        ratio = result["ratio_to_single"][k]
        verdict = "" if k == "1" else f"  goal <= {GOAL_RATIO}: {'met' if ratio <= GOAL_RATIO else 'MISSED'}"
        print(f"  {int(k):>2} {wall:8.3f} {ratio:13.2f}{verdict}")


if __name__ == "__main__":
    main()
