"""Soak test: run tasks for a while against a real fabric and report memory growth (issue 7.7).

    python -m bench.soak --minutes 30            # the documented default
    python -m bench.soak --minutes 2 --broker mosquitto

Starts a broker (embedded amqtt by default, or mosquitto) in its own process, one router and `--agents` echo
agents as `edge-agent` processes on loopback, then keeps `--concurrency` tasks in flight until the time is up.
The RSS of the broker, the router and every agent is sampled once the warm-up is over and again at the end; the
growth in % is printed per process, with a trajectory every 15 s. The bounded caches fill during the warm-up and
then stay flat: the router's 512 text vectors, the agents' last 1,024 runs, and the task ledger, whose answers
(and their retained messages on the broker) are kept for the retention window. The router runs with a 20 s
window here (`--retention`), so its ledger reaches its steady state within the warm-up; with the default 10 min
window it would fill for 10 min (at most 20,000 entries, a few KiB each). The default warm-up is 25 % of the
run, at most 2 min.
Exit code 1 when a process grew by more than `--max-growth` % or a task was lost.

Not part of CI: a meaningful soak takes minutes. The test suite only smoke-tests this script for a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from broker.policy import free_port, wait_for_port
from shared.client import FabricTaskClient, TaskFailed, TaskTimeout
from shared.config import ConnectionSettings

SAMPLE_EVERY_S = 15.0
AGENT_CONFIG = """\
agents:
  - preset: math
    backend: echo
    max_in_flight: 4
    backend_settings: {delay_s: %(delay)s}
connection: {keepalive_s: 5}
state_interval_s: 1
router: {answer_retention_s: %(retention)s}
"""


@dataclass
class Tally:
    answered: int = 0
    failed: int = 0
    lost: int = 0
    latencies_ms: list[float] = field(default_factory=list)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="How long to run tasks (default 30).")
    parser.add_argument("--agents", type=int, default=3, help="Echo agent processes (default 3).")
    parser.add_argument("--concurrency", type=int, default=8, help="Tasks in flight at once (default 8).")
    parser.add_argument("--cot-count", type=int, default=2, help="Runs per task (default 2).")
    parser.add_argument("--delay", type=float, default=0.05, help="Echo backend delay per run in s (default 0.05).")
    parser.add_argument("--broker", choices=["amqtt", "mosquitto"], default="amqtt", help="Broker kind.")
    parser.add_argument("--warm-up", type=float, default=None, help="Seconds before the first RSS sample.")
    parser.add_argument(
        "--retention", type=float, default=20.0, help="The router's answer retention in s (default 20; see below)."
    )
    parser.add_argument("--max-growth", type=float, default=10.0, help="Allowed RSS growth in %% (default 10).")
    return parser.parse_args(argv)


def start_broker(kind: str, port: int, directory: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "edge_agent.cli", "broker", "--host", "127.0.0.1", "--port", str(port)]
    if kind == "mosquitto":
        from broker.mosquitto import MosquittoConfig, find_mosquitto, render_config

        binary = find_mosquitto()
        if binary is None:
            raise SystemExit("mosquitto is not installed")
        config_file = directory / "mosquitto.conf"
        config_file.write_text(render_config(MosquittoConfig(host="127.0.0.1", port=port)))
        command = [binary, "-c", str(config_file)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def rss_mib(processes: dict[str, subprocess.Popen[bytes]]) -> dict[str, float]:
    return {name: psutil.Process(process.pid).memory_info().rss / 2**20 for name, process in processes.items()}


async def run_tasks(settings: ConnectionSettings, args: argparse.Namespace, until: float, tally: Tally) -> None:
    async with FabricTaskClient(settings) as client:

        async def worker(worker_index: int) -> None:
            index = 0
            while time.monotonic() < until:
                index += 1
                started = time.monotonic()
                try:
                    await client.submit(
                        f"What is {worker_index} * {index}?",
                        task_id=f"soak-{worker_index}-{index}-{uuid.uuid4().hex[:6]}",
                        cot_count=args.cot_count,
                        deadline_s=20.0,
                        timeout_s=50.0,
                        resend_every_s=5.0,
                    )
                    tally.answered += 1
                    tally.latencies_ms.append((time.monotonic() - started) * 1000)
                except TaskFailed:
                    tally.failed += 1
                except TaskTimeout:
                    tally.lost += 1

        await asyncio.gather(*(worker(index) for index in range(args.concurrency)))


async def wait_ready(settings: ConnectionSettings, timeout: float = 60.0) -> None:
    """Wait until one task round-trips (router and agents are up)."""
    deadline = time.monotonic() + timeout
    async with FabricTaskClient(settings) as client:
        while time.monotonic() < deadline:
            try:
                await client.submit("ready?", cot_count=1, deadline_s=5.0, timeout_s=6.0, resend_every_s=1.0)
                return
            except (TaskFailed, TaskTimeout):
                await asyncio.sleep(0.5)
    raise SystemExit("the fabric did not answer within 60 s")


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    directory = Path(tempfile.mkdtemp(prefix="symphony-soak-"))
    env = dict(os.environ, SYMPHONY_EDGE_STATE_DIR=str(directory / "state"), PYTHONUNBUFFERED="1")
    port = free_port()
    url = f"mqtt://127.0.0.1:{port}"
    fabric = f"soak-{uuid.uuid4().hex[:6]}"
    config_file = directory / "node.yaml"
    config_file.write_text(AGENT_CONFIG % {"delay": args.delay, "retention": args.retention})
    processes: dict[str, subprocess.Popen[bytes]] = {"broker": start_broker(args.broker, port, directory)}
    try:
        wait_for_port(port)
        common = ["--broker", url, "--fabric", fabric, "-c", str(config_file)]
        cli = [sys.executable, "-m", "edge_agent.cli"]
        logs = directory / "logs"
        logs.mkdir()
        children = {"router": [*cli, "router", *common, "--router-id", "soak-router"]}
        for index in range(args.agents):
            children[f"agent-{index}"] = [*cli, "start", *common, "--node-id", f"soak-{index}", "--backend", "echo"]
        for name, command in children.items():
            with open(logs / f"{name}.log", "wb") as log:
                processes[name] = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        settings = ConnectionSettings(fabric=fabric, brokers=(url,), keepalive_s=5)
        asyncio.run(wait_ready(settings))
        return soak(args, settings, processes)
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def soak(args: argparse.Namespace, settings: ConnectionSettings, processes: dict[str, subprocess.Popen[bytes]]) -> int:
    duration_s = args.minutes * 60
    warm_up_s = args.warm_up if args.warm_up is not None else min(120.0, duration_s * 0.25)
    tally = Tally()
    started = time.monotonic()
    baseline: dict[str, float] = {}
    samples: list[dict[str, float]] = []

    async def run() -> None:
        load = asyncio.ensure_future(run_tasks(settings, args, started + duration_s, tally))
        await asyncio.sleep(warm_up_s)
        baseline.update(rss_mib(processes))
        while not load.done():  # a trajectory tells a plateau (caches filling) from a steady leak
            await asyncio.wait({load}, timeout=SAMPLE_EVERY_S)
            samples.append(rss_mib(processes))
        await load

    asyncio.run(run())
    final = rss_mib(processes)
    elapsed = time.monotonic() - started
    print(f"soak: {elapsed / 60:.1f} min, broker {args.broker}, {args.agents} agents, concurrency {args.concurrency}")
    latencies = sorted(tally.latencies_ms) or [0.0]
    print(
        f"tasks: answered {tally.answered} ({tally.answered / elapsed:.1f}/s), failed {tally.failed}, "
        f"lost {tally.lost}; latency p50 {latencies[len(latencies) // 2]:.0f} ms"
    )
    print(f"{'process':<10} {'RSS start MiB':>14} {'RSS end MiB':>12} {'growth %':>9}  (start = after {warm_up_s:g} s)")
    worst = 0.0
    for name in processes:
        growth = (final[name] - baseline[name]) / baseline[name] * 100
        worst = max(worst, growth)
        print(f"{name:<10} {baseline[name]:>14.1f} {final[name]:>12.1f} {growth:>+9.1f}")
    for name in processes:
        print(f"{name:<10} every {SAMPLE_EVERY_S:g} s: " + " ".join(f"{sample[name]:.1f}" for sample in samples))
    ok = worst <= args.max_growth and tally.lost == 0
    print(f"{'PASS' if ok else 'FAIL'}: worst growth {worst:+.1f} % (limit {args.max_growth:g} %), lost {tally.lost}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
