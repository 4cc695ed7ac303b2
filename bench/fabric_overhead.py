"""Routing overhead per task: the router over echo agents (delay 0) next to a bare paho relay of the same 4 hops.

Run with `python -m bench.fabric_overhead [--tasks N] [--clients C] [--brokers mosquitto,amqtt]`.

For each broker (mosquitto with the kit's rendered config, and the embedded amqtt broker, each in its own
process) two systems are measured in the same run:

    bare relay   client ─submit─► relay-"router" ─run─► relay-"agent" ─result─► relay-"router" ─reply─► client
                 three processes, paho, QoS 1, TCP_NODELAY on both ends, payload passed through untouched
    router       FabricTaskClient ─► `edge-agent router` ─► `edge-agent start` (echo, delay 0) ─► router ─► client
                 cot_count 1, plan_k 1: the same 4 hops, plus pydantic, screening, LinUCB, trace events, state

Reported: per-task latency with one client (p50/p95; for the router also the overhead = wall time minus the
backend's own time), and throughput with C concurrent clients (closed loop). The goal: router p50 within 2x of
the relay, router throughput at least half the relay's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from broker.policy import free_port, wait_for_port

REPO = Path(__file__).resolve().parent.parent
RELAY_FABRIC = "bench-relay"


@dataclass
class Figures:
    """Latency (one client) and throughput (several clients) of one system on one broker."""

    system: str
    p50_ms: float
    p95_ms: float
    tasks_per_s: float
    overhead_p50_ms: float | None = None
    overhead_p95_ms: float | None = None
    cpu_ms_per_task: dict[str, float] | None = None  # per process, during the throughput phase


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, round(share * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


@contextmanager
def processes(*commands: list[str], env: dict[str, str] | None = None) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Child processes for the duration of the block (terminated, then killed if they linger)."""
    started = [
        subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for command in commands
    ]
    try:
        yield started
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def broker(kind: str, directory: Path) -> Iterator[str]:
    """A broker process on a free loopback port; yields its URL."""
    port = free_port()
    if kind == "mosquitto":
        from broker.mosquitto import MosquittoConfig, find_mosquitto, render_config

        binary = find_mosquitto()
        if binary is None:
            raise SystemExit("mosquitto is not installed")
        config = directory / f"mosquitto-{port}.conf"
        config.write_text(render_config(MosquittoConfig(host="127.0.0.1", port=port)))
        command = [binary, "-c", str(config)]
    else:
        command = [sys.executable, "-m", "edge_agent.cli", "broker", "--host", "127.0.0.1", "--port", str(port)]
    with processes(command):
        wait_for_port(port)
        yield f"mqtt://127.0.0.1:{port}"


# --- the bare relay ----------------------------------------------------------------------------------------


def relay_topics() -> dict[str, str]:
    from shared.topics import Topics

    topics = Topics(RELAY_FABRIC)
    return {
        "submit": topics.task_submit(),
        "run": topics.agent_run("relay-agent"),
        "result": topics.router_inbox("relay-router"),
        "reply": topics.reply("relay-client"),
    }


def paho_client(port: int, name: str, subscriptions: list[str], on_message: Any) -> Any:
    """A connected paho client (QoS 1 subscriptions, TCP_NODELAY) running its network loop in a thread."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    connected = threading.Event()
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4().hex[:6]}", protocol=paho.MQTTv311
    )
    client.max_inflight_messages_set(100)

    def on_connect(client: paho.Client, userdata: object, flags: object, reason: object, properties: object) -> None:
        sock: Any = client.socket()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for topic in subscriptions:
            client.subscribe(topic, 1)
        connected.set()

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not connected.wait(10):
        raise TimeoutError(f"{name} could not connect")
    return client


def run_relay_role(role: str, port: int) -> None:
    """The relay's "router" (submit -> run, result -> reply) or "agent" (run -> result), until terminated."""
    topics = relay_topics()
    forward = (
        {topics["submit"]: topics["run"], topics["result"]: topics["reply"]}
        if role == "relay-router"
        else {topics["run"]: topics["result"]}
    )
    holder: list[object] = []

    def on_message(client: object, userdata: object, message: object) -> None:
        holder[0].publish(forward[message.topic], message.payload, qos=1)  # type: ignore[attr-defined]

    holder.append(paho_client(port, role, list(forward), on_message))
    threading.Event().wait()


def relay_client(port: int, tasks: int, concurrency: int, timeout_s: float = 120.0) -> tuple[list[float], float]:
    """Closed loop with `concurrency` tasks out; returns per-task latencies (ms) and tasks/s."""
    topics = relay_topics()
    sent: dict[bytes, float] = {}
    latencies: list[float] = []
    lock = threading.Lock()
    done = threading.Event()
    counter = iter(range(tasks))
    holder: list[object] = []

    def send_next() -> None:
        number = next(counter, None)
        if number is None:
            return
        payload = json.dumps({"id": number, "query": "What is 6 * 7?"}).encode()
        sent[payload] = time.perf_counter()
        holder[0].publish(topics["submit"], payload, qos=1)  # type: ignore[attr-defined]

    def on_message(client: object, userdata: object, message: object) -> None:
        now = time.perf_counter()
        with lock:
            latencies.append((now - sent.pop(message.payload)) * 1000)  # type: ignore[attr-defined]
            if len(latencies) == tasks:
                done.set()
            send_next()

    holder.append(paho_client(port, "relay-client", [topics["reply"]], on_message))
    started = time.perf_counter()
    with lock:
        for _ in range(concurrency):
            send_next()
    if not done.wait(timeout_s):
        raise TimeoutError(f"relay: {len(latencies)} of {tasks} replies within {timeout_s} s")
    elapsed = time.perf_counter() - started
    holder[0].disconnect()  # type: ignore[attr-defined]
    holder[0].loop_stop()  # type: ignore[attr-defined]
    return latencies, tasks / elapsed


def wait_for_relay(port: int, timeout_s: float = 60.0) -> None:
    """Probe the relay until a probe comes back, then let the stragglers of earlier probes drain."""
    topics = relay_topics()
    answered = threading.Event()
    client = paho_client(port, "relay-probe", [topics["reply"]], lambda *args: answered.set())
    try:
        deadline = time.monotonic() + timeout_s
        while not answered.wait(0.5):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the relay did not answer within {timeout_s:g} s")
            client.publish(topics["submit"], b"probe", qos=1)
        time.sleep(0.5)  # a probe sent before both relays subscribed is lost; one sent after arrives by now
    finally:
        client.disconnect()
        client.loop_stop()


def measure_relay(url: str, tasks: int, clients: int) -> Figures:
    port = int(url.rsplit(":", 1)[1])
    role = [sys.executable, "-m", "bench.fabric_overhead", "--port", str(port), "--role"]
    with processes([*role, "relay-router"], [*role, "relay-agent"]):
        wait_for_relay(port)  # both relays subscribed (a slow start on a busy machine takes seconds)
        relay_client(port, 50, 1)  # warm-up
        latencies, _ = relay_client(port, tasks, 1)
        _, throughput = relay_client(port, tasks * 2, clients)
    return Figures("bare relay", percentile(latencies, 0.5), percentile(latencies, 0.95), throughput)


# --- the router ----------------------------------------------------------------------------------------------


async def router_client_loop(
    connection: object, tasks: int, clients: int, trace: str = "summary"
) -> tuple[list[float], list[float], float]:
    """`clients` FabricTaskClients, each submitting its share one after the other; latencies and overheads in ms."""
    from shared.client import FabricTaskClient

    latencies: list[float] = []
    overheads: list[float] = []
    shares = [tasks // clients + (1 if index < tasks % clients else 0) for index in range(clients)]

    async def one_client(count: int) -> None:
        async with FabricTaskClient(connection) as client:  # type: ignore[arg-type]
            for _ in range(count):
                started = time.perf_counter()
                answer = await client.submit(
                    "What is 6 * 7?", cot_count=1, plan_k=1, deadline_s=30, timeout_s=30, trace=trace
                )
                wall = (time.perf_counter() - started) * 1000
                backend = sum(ballot.latency_ms for subtask in answer.subtasks for ballot in subtask.ballots)
                latencies.append(wall)
                overheads.append(wall - backend)

    started = time.perf_counter()
    await asyncio.gather(*(one_client(share) for share in shares if share))
    return latencies, overheads, tasks / (time.perf_counter() - started)


async def wait_until_routed(connection: object, timeout_s: float = 30.0) -> None:
    from shared.client import FabricTaskClient, TaskFailed, TaskTimeout

    deadline = time.monotonic() + timeout_s
    async with FabricTaskClient(connection) as client:  # type: ignore[arg-type]
        while True:
            try:
                await client.submit("ready?", cot_count=1, deadline_s=2, timeout_s=3)
                return
            except (TaskFailed, TaskTimeout):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


def measure_router(
    url: str, tasks: int, clients: int, directory: Path, trace: str = "summary", buffered: bool = True
) -> Figures:
    from shared.config import ConnectionSettings

    fabric = f"bench-{uuid.uuid4().hex[:6]}"
    node_config = directory / f"{fabric}.yaml"
    agent = {"preset": "math", "backend": "echo", "max_in_flight": 8, "backend_settings": {"delay_s": 0.0}}
    node_config.write_text(json.dumps({"agents": [agent, agent], "connection": {"buffered_reads": buffered}}))
    env = dict(os.environ, SYMPHONY_EDGE_STATE_DIR=str(directory / "state"))
    common = ["--broker", url, "--fabric", fabric]
    cli = [sys.executable, "-m", "edge_agent.cli"]
    node = [*cli, "start", "-c", str(node_config), "--node-id", "bench-node", *common]
    router = [*cli, "router", "--router-id", "bench-router", "-c", str(node_config), *common]
    connection = ConnectionSettings(fabric=fabric, brokers=(url,), buffered_reads=buffered)
    with processes(node, router, env=env) as (node_process, router_process):
        cpu_ms: dict[str, float] = {}

        async def scenario() -> tuple[list[float], list[float], float]:
            await wait_until_routed(connection)
            await router_client_loop(connection, 50, 1, trace)  # warm-up
            latencies, overheads, _ = await router_client_loop(connection, tasks, 1, trace)
            watched = {"router": router_process.pid, "agent": node_process.pid, "client": os.getpid()}
            before = cpu_seconds(watched)
            _, _, throughput = await router_client_loop(connection, tasks * 2, clients, trace)
            after = cpu_seconds(watched)
            cpu_ms.update({name: (after[name] - before[name]) * 1000 / (tasks * 2) for name in watched})
            return latencies, overheads, throughput

        latencies, overheads, throughput = asyncio.run(scenario())
    return Figures(
        "router",
        percentile(latencies, 0.5),
        percentile(latencies, 0.95),
        throughput,
        percentile(overheads, 0.5),
        percentile(overheads, 0.95),
        {name: round(value, 2) for name, value in cpu_ms.items()},
    )


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU time of each process so far."""
    import psutil

    times = {name: psutil.Process(pid).cpu_times() for name, pid in pids.items()}
    return {name: t.user + t.system for name, t in times.items()}


# --- report --------------------------------------------------------------------------------------------------


def report(kind: str, relay: Figures, router: Figures, clients: int) -> None:
    print(f"\n{kind}")
    print(f"  {'system':<11} {'p50 ms':>8} {'p95 ms':>8} {'overhead p50/p95 ms':>20} {f'tasks/s (c={clients})':>16}")
    for figures in (relay, router):
        overhead = (
            f"{figures.overhead_p50_ms:.2f} / {figures.overhead_p95_ms:.2f}"
            if figures.overhead_p50_ms is not None and figures.overhead_p95_ms is not None
            else "-"
        )
        print(
            f"  {figures.system:<11} {figures.p50_ms:8.2f} {figures.p95_ms:8.2f} {overhead:>20} "
            f"{figures.tasks_per_s:16.0f}"
        )
    if router.cpu_ms_per_task:
        shares = ", ".join(f"{name} {value:.2f}" for name, value in router.cpu_ms_per_task.items())
        print(f"  router CPU ms per task (throughput phase): {shares}")
    latency_ratio = router.p50_ms / relay.p50_ms
    throughput_ratio = router.tasks_per_s / relay.tasks_per_s
    print(
        f"  router/relay: p50 x{latency_ratio:.2f} (goal <= 2: {'met' if latency_ratio <= 2 else 'MISSED'}), "
        f"throughput x{throughput_ratio:.2f} (goal >= 0.5: {'met' if throughput_ratio >= 0.5 else 'MISSED'})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tasks", type=int, default=300, help="Tasks for the latency phase (twice as many for throughput)."
    )
    parser.add_argument("--clients", type=int, default=4, help="Concurrent clients of the throughput phase.")
    parser.add_argument("--brokers", default="mosquitto,amqtt", help="Comma-separated: mosquitto, amqtt.")
    parser.add_argument(
        "--trace",
        choices=["full", "summary"],
        default="summary",
        help="The tasks' trace option (summary: the default).",
    )
    parser.add_argument(
        "--buffered-reads",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Router, agents and client read buffered (the default; --no-buffered-reads: paho's reads).",
    )
    parser.add_argument("--role", choices=["relay-router", "relay-agent"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.role:
        run_relay_role(arguments.role, arguments.port)
        return
    brokers = tuple(arguments.brokers.split(","))
    print_summary(measure(arguments.tasks, arguments.clients, brokers, arguments.trace, arguments.buffered_reads))


def measure(
    tasks: int = 300,
    clients: int = 4,
    brokers: tuple[str, ...] = ("mosquitto", "amqtt"),
    trace: str = "summary",
    buffered: bool = True,
) -> dict[str, Any]:
    """Relay and router figures per broker, with the router/relay ratios (`trace`: the tasks' trace option)."""
    result: dict[str, Any] = {"tasks": tasks, "clients": clients, "trace": trace, "buffered": buffered, "brokers": {}}
    with tempfile.TemporaryDirectory(prefix="fabric-overhead-") as temporary:
        directory = Path(temporary)
        for kind in brokers:
            with broker(kind, directory) as url:
                relay = measure_relay(url, tasks, clients)
                router = measure_router(url, tasks, clients, directory, trace, buffered)
            result["brokers"][kind] = {
                "relay": asdict(relay),
                "router": asdict(router),
                "p50_ratio": round(router.p50_ms / relay.p50_ms, 2),
                "throughput_ratio": round(router.tasks_per_s / relay.tasks_per_s, 2),
            }
    return result


def print_summary(result: dict[str, Any]) -> None:
    tasks, clients = result["tasks"], result["clients"]
    trace = result.get("trace", "full")
    reads = "buffered reads" if result.get("buffered") else "paho reads"
    print(f"fabric overhead: {tasks} tasks one at a time, {2 * tasks} with {clients} clients (trace {trace}, {reads})")
    for kind, figures in result["brokers"].items():
        report(kind, Figures(**figures["relay"]), Figures(**figures["router"]), result["clients"])


if __name__ == "__main__":
    main()
