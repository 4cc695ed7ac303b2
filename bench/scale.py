"""Routing cost against fleet size: an emulated fleet on a few connections, the real router and broker.

Run with `edge-agent bench scale --nodes 10 100 1000 5000` (or `python -m bench.scale`).

    fleet    one process, a few paho connections: N nodes with one agent each, retained beacons, a state per
             node every 5 s (spread evenly), every run answered at once (an echo of "42")
    router   `RouterService`, the real router, in its own process (`--role router`), one per router asked for
    clients  `FabricTaskClient`s in this process: tasks with cot_count 3, one at a time

For each fleet size: the router's CPU while the fleet only sends states (the state ingest), then its CPU per
task and the task latency p50/p95 over tasks one at a time. CPU per task is reported net of the ingest (the
routing cost the goal is about) and gross. Then: the ingest of 10,000 nodes as a share of one core, the
router's RSS with 10,000 agents, and tasks/s with 1, 2 and 4 routers (shared subscriptions on mosquitto).
Each goal is printed as met or missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.fabric_overhead import broker, cpu_seconds, paho_client, percentile, processes

CPU_GOAL_RATIO = 1.5  # CPU per task at the largest fleet against the smallest
INGEST_GOAL_SHARE = 0.10  # of one core, for 10,000 nodes
RSS_GOAL_MB = 150.0  # with 10,000 agents
TEMPLATES = (
    (("mathematical-reasoning", "verification"), "careful arithmetic solver"),
    (("code-implementation", "debugging"), "python programmer"),
    (("writing", "summarization"), "concise writer"),
    (("retrieval", "fact-checking", "analysis"), "research assistant"),
)


@dataclass
class SizeFigures:
    nodes: int
    tasks: int
    cpu_ms_per_task: float  # net of the state ingest
    cpu_ms_per_task_gross: float
    p50_ms: float
    p95_ms: float
    ingest_core_share: float
    rss_mb: float


# --- the emulated fleet ---------------------------------------------------------------------------------------


def node_id(index: int) -> str:
    return f"sim-{index:05d}"


def beacon_payload(fabric: str, index: int, epoch: int) -> bytes:
    tags, persona = TEMPLATES[index % len(TEMPLATES)]
    agent = {
        "agent_id": f"{node_id(index)}-a",
        "persona": persona,
        "capabilities": list(tags),
        "backend": "echo",
        "model": "echo",
        "max_in_flight": 4,
    }
    beacon = {
        "kind": "node_beacon",
        "v": 1,
        "node_id": node_id(index),
        "epoch": epoch,
        "instance_id": "sim",
        "status": "online",
        "agents": [agent],
        "sent_at": time.time(),
    }
    return json.dumps(beacon).encode()


def state_payload(index: int, epoch: int, load: float) -> bytes:
    agent = {"agent_id": f"{node_id(index)}-a", "load": load, "in_flight": 0, "queue_length": 0, "latency_ema_ms": 1.0}
    return json.dumps(
        {"kind": "node_state", "v": 1, "node_id": node_id(index), "epoch": epoch, "agents": [agent]}
    ).encode()


def run_fleet(port: int, fabric: str, nodes: int, interval_s: float, connections: int = 2) -> None:
    """Beacons, periodic states and answered runs of `nodes` emulated nodes, until terminated."""
    from shared.topics import Topics

    topics = Topics(fabric)
    epoch = int(time.time() * 1000)
    holder: list[Any] = []

    def on_run(client: Any, userdata: object, message: Any) -> None:
        request = json.loads(message.payload)
        if request.get("kind") != "run_request":  # a RunCancel of a run cut short by an early-stopped vote
            return
        agent_id = request["agent_id"]
        result = {
            "kind": "run_result",
            "v": 1,
            "dispatch_id": request["dispatch_id"],
            "task_id": request["task_id"],
            "agent_id": agent_id,
            "node_id": agent_id[:-2],
            "text": "The answer is 42.",
            "latency_ms": 0.5,
        }
        holder[0].publish(request["reply_topic"], json.dumps(result).encode(), qos=1)

    holder.append(paho_client(port, "fleet-runs", [f"{topics.prefix}/agent/+/run"], on_run))
    senders = [paho_client(port, f"fleet-{n}", [], None) for n in range(max(1, connections - 1))]
    for index in range(nodes):
        senders[index % len(senders)].publish(
            topics.beacon(node_id(index)), beacon_payload(fabric, index, epoch), 1, True
        )
    states = [(topics.state(node_id(i)), state_payload(i, epoch, (i % 5) / 10)) for i in range(nodes)]
    print("ready", flush=True)
    tick_s = 0.02
    per_tick = nodes * tick_s / interval_s
    due = 0.0
    position = 0
    next_tick = time.monotonic()
    while True:
        due += per_tick
        while due >= 1.0:
            topic, payload = states[position]
            senders[position % len(senders)].publish(topic, payload, 0)
            position = (position + 1) % nodes
            due -= 1.0
        next_tick += tick_s
        time.sleep(max(0.0, next_tick - time.monotonic()))


# --- the router ------------------------------------------------------------------------------------------------


def run_router(
    url: str, fabric: str, router_id: str, status_file: Path, share_group: str | None, buffered: bool = True
) -> None:
    """The real router; writes its live agent count to `status_file` every 0.2 s, until terminated."""
    from router.service import RouterConfig, RouterService
    from shared.config import ConnectionSettings

    async def serve() -> None:
        connection = ConnectionSettings(fabric=fabric, brokers=(url,), buffered_reads=buffered)
        config = RouterConfig(router_id=router_id, connection=connection, share_group=share_group)
        service = RouterService(config)
        await service.start()
        while True:
            status_file.write_text(str(len(service.live_agents())))
            await asyncio.sleep(0.2)

    asyncio.run(serve())


def wait_for_agents(status_files: list[Path], count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        seen = [int(path.read_text() or 0) if path.exists() else 0 for path in status_files]
        if min(seen) >= count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the routers saw {seen} of {count} agents after {timeout_s:g} s")
        time.sleep(0.2)


# --- clients ---------------------------------------------------------------------------------------------------


async def client_loop(connection: Any, tasks: int, clients: int) -> tuple[list[float], float]:
    """`clients` FabricTaskClients submitting their share of tasks one after the other (cot_count 3)."""
    from shared.client import FabricTaskClient

    latencies: list[float] = []
    shares = [tasks // clients + (1 if index < tasks % clients else 0) for index in range(clients)]

    async def one_client(count: int) -> None:
        async with FabricTaskClient(connection) as client:
            for _ in range(count):
                started = time.perf_counter()
                await client.submit("What is 6 * 7?", cot_count=3, plan_k=1, deadline_s=30, timeout_s=60)
                latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(one_client(share) for share in shares if share))
    return latencies, tasks / (time.perf_counter() - started)


# --- a measured setup: broker, fleet, routers ------------------------------------------------------------------


class Setup:
    """Fleet and routers on one broker for the duration of a `with` block."""

    def __init__(
        self, url: str, directory: Path, nodes: int, routers: int = 1, share: bool = False, buffered: bool = True
    ) -> None:
        self.url, self.directory, self.nodes, self.buffered = url, directory, nodes, buffered
        self.fabric = f"scale-{uuid.uuid4().hex[:6]}"
        self.status_files = [directory / f"{self.fabric}-r{n}" for n in range(routers)]
        me = [sys.executable, "-m", "bench.scale", "--url", url, "--fabric", self.fabric]
        self.commands = [
            [*me, "--role", "router", "--router-id", f"r{n}", "--status-file", str(path)]
            + (["--share-group", "bench"] if share else [])
            + (["--buffered-reads"] if buffered else ["--no-buffered-reads"])
            for n, path in enumerate(self.status_files)
        ]
        self.commands.append([*me, "--role", "fleet", "--fleet-nodes", str(nodes)])

    def __enter__(self) -> Setup:
        from shared.config import ConnectionSettings

        self._stack = contextlib.ExitStack()
        started = self._stack.enter_context(processes(*self.commands, env=dict(os.environ, PYTHONPATH=str(Path.cwd()))))
        self.router_pids = [process.pid for process in started[:-1]]
        self.connection = ConnectionSettings(fabric=self.fabric, brokers=(self.url,), buffered_reads=self.buffered)
        wait_for_agents(self.status_files, self.nodes, timeout_s=60 + self.nodes / 100)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def router_cpu(self) -> float:
        return sum(cpu_seconds({str(pid): pid for pid in self.router_pids}).values())

    def router_rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.router_pids[0]).memory_info().rss / 2**20

    def ingest_share(self, seconds: float) -> float:
        """The routers' CPU per wall second while only states flow (one core = 1.0)."""
        before, started = self.router_cpu(), time.monotonic()
        time.sleep(seconds)
        return (self.router_cpu() - before) / (time.monotonic() - started)


def measure_size(url: str, directory: Path, nodes: int, tasks: int, idle_s: float, buffered: bool) -> SizeFigures:
    with Setup(url, directory, nodes, buffered=buffered) as setup:
        asyncio.run(client_loop(setup.connection, 20, 1))  # warm-up
        ingest = setup.ingest_share(idle_s)
        before, started = setup.router_cpu(), time.monotonic()
        latencies, _ = asyncio.run(client_loop(setup.connection, tasks, 1))
        gross = setup.router_cpu() - before
        elapsed = time.monotonic() - started
        net = max(0.0, gross - ingest * elapsed)
        return SizeFigures(
            nodes,
            tasks,
            round(net * 1000 / tasks, 3),
            round(gross * 1000 / tasks, 3),
            round(percentile(latencies, 0.5), 2),
            round(percentile(latencies, 0.95), 2),
            round(ingest, 4),
            round(setup.router_rss_mb(), 1),
        )


def measure_fleet_only(url: str, directory: Path, nodes: int, idle_s: float, buffered: bool) -> dict[str, float]:
    with Setup(url, directory, nodes, buffered=buffered) as setup:
        time.sleep(1.0)
        return {
            "nodes": nodes,
            "ingest_core_share": round(setup.ingest_share(idle_s), 4),
            "rss_mb": round(setup.router_rss_mb(), 1),
        }


def measure_routers(
    url: str, directory: Path, counts: list[int], tasks: int, clients: int, buffered: bool
) -> list[dict[str, Any]]:
    rows = []
    for routers in counts:
        with Setup(url, directory, 100, routers=routers, share=True, buffered=buffered) as setup:
            asyncio.run(client_loop(setup.connection, 20, clients))  # warm-up
            _, throughput = asyncio.run(client_loop(setup.connection, tasks, clients))
            rows.append({"routers": routers, "tasks_per_s": round(throughput, 1), "clients": clients})
    return rows


def measure(
    nodes: list[int],
    tasks: int = 100,
    idle_s: float = 5.0,
    ingest_nodes: int = 10_000,
    routers: list[int] | None = None,
    clients: int = 8,
    buffered: bool = True,
) -> dict[str, Any]:
    """Every figure of the scale benchmark, with the goals as met / missed (`buffered`: routers read buffered)."""
    result: dict[str, Any] = {"tasks": tasks, "sizes": [], "cpu": os.cpu_count(), "buffered": buffered}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as temporary, broker("mosquitto", Path(temporary)) as url:
        directory = Path(temporary)
        for size in sorted(nodes):
            result["sizes"].append(asdict(measure_size(url, directory, size, tasks, idle_s, buffered)))
        if ingest_nodes:
            result["fleet"] = measure_fleet_only(url, directory, ingest_nodes, idle_s, buffered)
        if routers:
            result["routers"] = measure_routers(url, directory, routers, tasks * 2, clients, buffered)
    result["goals"] = goals(result)
    return result


def goals(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    sizes = result["sizes"]
    if len(sizes) >= 2 and sizes[0]["cpu_ms_per_task"] > 0:
        ratio = sizes[-1]["cpu_ms_per_task"] / sizes[0]["cpu_ms_per_task"]
        label = f"router CPU per task at {sizes[-1]['nodes']} nodes / at {sizes[0]['nodes']}"
        found["cpu_flat"] = {
            "what": label,
            "value": round(ratio, 2),
            "goal": f"<= {CPU_GOAL_RATIO}",
            "met": ratio <= CPU_GOAL_RATIO,
        }
    fleet = result.get("fleet")
    if fleet:
        share = fleet["ingest_core_share"]
        found["ingest"] = {
            "what": f"state ingest of {fleet['nodes']} nodes (share of one core)",
            "value": share,
            "goal": f"<= {INGEST_GOAL_SHARE}",
            "met": share <= INGEST_GOAL_SHARE,
        }
        found["rss"] = {
            "what": f"router RSS with {fleet['nodes']} agents (MB)",
            "value": fleet["rss_mb"],
            "goal": f"<= {RSS_GOAL_MB:g}",
            "met": fleet["rss_mb"] <= RSS_GOAL_MB,
        }
    return found


def print_summary(result: dict[str, Any]) -> None:
    reads = "buffered reads" if result.get("buffered") else "paho reads"
    print(f"scale: {result['tasks']} tasks (cot_count 3) one at a time per fleet size; {result['cpu']} CPUs; {reads}")
    print(
        f"  {'nodes':>6} {'CPU/task ms':>12} {'(gross)':>8} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'ingest core':>12} {'RSS MB':>7}"
    )
    for row in result["sizes"]:
        print(
            f"  {row['nodes']:>6} {row['cpu_ms_per_task']:>12.2f} {row['cpu_ms_per_task_gross']:>8.2f} "
            f"{row['p50_ms']:>8.2f} {row['p95_ms']:>8.2f} {row['ingest_core_share']:>12.3f} {row['rss_mb']:>7.1f}"
        )
    for row in result.get("routers", []):
        print(
            f"  {row['routers']} router(s), shared subscription: {row['tasks_per_s']:.0f} tasks/s "
            f"({row['clients']} clients)"
        )
    for goal in result["goals"].values():
        print(f"  {goal['what']}: {goal['value']} (goal {goal['goal']}: {'met' if goal['met'] else 'MISSED'})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 100, 1000, 5000])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--idle", type=float, default=5.0, help="Seconds of state ingest measured per fleet.")
    parser.add_argument("--ingest-nodes", type=int, default=10_000)
    parser.add_argument("--routers", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--buffered-reads",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Routers and clients read buffered (the default; --no-buffered-reads: paho's reads).",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--role", choices=["router", "fleet"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--fabric", help=argparse.SUPPRESS)
    parser.add_argument("--router-id", help=argparse.SUPPRESS)
    parser.add_argument("--status-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--share-group", help=argparse.SUPPRESS)
    parser.add_argument("--fleet-nodes", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.role == "router":
        run_router(
            arguments.url,
            arguments.fabric,
            arguments.router_id,
            arguments.status_file,
            arguments.share_group,
            arguments.buffered_reads,
        )
    elif arguments.role == "fleet":
        run_fleet(int(arguments.url.rsplit(":", 1)[1]), arguments.fabric, arguments.fleet_nodes, 5.0)
    else:
        result = measure(
            arguments.nodes,
            arguments.tasks,
            arguments.idle,
            arguments.ingest_nodes,
            arguments.routers,
            arguments.clients,
            arguments.buffered_reads,
        )
        print(json.dumps(result, indent=2)) if arguments.json else print_summary(result)


if __name__ == "__main__":
    main()
