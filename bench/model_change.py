"""Change the model of agents on several nodes under continuous load, and count what the clients saw.

    broker ─ router ─ seed node (holds the new model, serves it) ─ N nodes (old agents)
    clients: closed loops of tasks (cot_count 1), resending an unanswered task under the same id
    before:  `before_s` of load → latency p50/p95
    change:  a rolling rollout (canary, then one at a time, probe per node) of desired states naming the new
             model by sha256: each node fetches it from a peer, loads it, drains, swaps, reports
    after:   until every node reports the new generation (+ `after_s`)

Reported: tasks submitted, answered, failed (an ErrorReply), lost (no answer by the end), latency p50/p95 before
and during the change, and for each node where its model came from (its log: "fetched model ... from ...").
Goals (issue 23): 0 lost, 0 failed, each node downloads the model once, from a peer.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.fabric_overhead import REPO, broker, percentile
from model_store import default_model_path
from model_store.holdings import sha256_file
from provisioning.desired import Change
from provisioning.rollout import FleetLink, roll_out
from shared.client import FabricTaskClient, TaskFailed, TaskTimeout
from shared.config import ConnectionSettings
from shared.messages import DesiredAgent, DesiredState, ModelRef

FETCHED = re.compile(r"fetched model (\S+) from (.*)$", re.MULTILINE)


@dataclass
class Tally:
    submitted: int = 0
    answered: int = 0
    failed: int = 0
    lost: int = 0
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (finished at, ms)


def _node_config(directory: Path, node: str, url: str, fabric: str, backend: str, delay_s: float) -> Path:
    agent: dict[str, Any] = {"agent_id": f"{node}-math", "preset": "math", "max_in_flight": 2}
    if backend == "echo":
        agent.update(backend="echo", backend_settings={"delay_s": delay_s})
    else:
        agent.update(backend="llamacpp", threads=1, max_tokens=16)
    data = {
        "node_id": node,
        "connection": {"fabric": fabric, "brokers": [url], "keepalive_s": 5},
        "agents": [agent],
        "state_dir": str(directory / node),
        "state_interval_s": 1.0,
        "model_server": {"host": "127.0.0.1", "port": 0, "advertise": "127.0.0.1"},
    }
    path = directory / f"{node}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def _client_loop(connection: ConnectionSettings, tally: Tally, stop: asyncio.Event, max_tokens: int) -> None:
    async with FabricTaskClient(connection) as client:
        while not stop.is_set():
            tally.submitted += 1
            started = time.monotonic()
            try:
                await client.submit(
                    "What is 6 times 7?", cot_count=1, plan_k=1, max_tokens=max_tokens, timeout_s=120, resend_every_s=5
                )
            except TaskFailed:
                tally.failed += 1
                continue
            except TaskTimeout:
                tally.lost += 1
                continue
            tally.answered += 1
            tally.latencies.append((time.monotonic(), (time.monotonic() - started) * 1000))


async def _wait_online(link: FleetLink, nodes: list[str], timeout_s: float) -> None:
    def up() -> bool:
        return all(node in link.beacons and link.beacons[node].status == "online" for node in nodes)

    if not await link.wait_until(up, timeout_s):
        raise RuntimeError(f"nodes did not come up: {sorted(set(nodes) - set(link.beacons))}")


def measure(
    nodes: int = 3,
    kind: str = "mosquitto",
    backend: str = "echo",
    clients: int = 4,
    before_s: float = 15.0,
    after_s: float = 5.0,
    delay_s: float = 0.2,
) -> dict[str, Any]:
    """Run the scenario once on one broker kind; returns the figures."""
    with tempfile.TemporaryDirectory(prefix="model-change-") as folder:
        directory = Path(folder)
        seed_models = directory / "seed" / "models"
        seed_models.mkdir(parents=True)
        new_model = seed_models / "smollm2-new.gguf"
        new_model.write_bytes(default_model_path().read_bytes() + uuid.uuid4().bytes * 256)  # only the seed has it
        reference = ModelRef(name=new_model.name, sha256=sha256_file(new_model), size_bytes=new_model.stat().st_size)
        with broker(kind, directory) as url:
            fabric = f"change-{uuid.uuid4().hex[:6]}"
            names = ["seed"] + [f"node-{index}" for index in range(1, nodes + 1)]
            logs = {name: (directory / f"{name}.log").open("w") for name in [*names, "router"]}
            commands = {
                name: ["start", "-c", str(_node_config(directory, name, url, fabric, backend, delay_s))]
                for name in names
            }
            commands["router"] = ["router", "-b", url, "--fabric", fabric]
            started = [
                subprocess.Popen(
                    [sys.executable, "-m", "edge_agent.cli", "-v", *arguments],
                    cwd=REPO,
                    stdout=logs[name],
                    stderr=subprocess.STDOUT,
                )
                for name, arguments in commands.items()
            ]
            try:
                connection = ConnectionSettings(fabric=fabric, brokers=(url,), connect_timeout_s=30)
                result = asyncio.run(_scenario(connection, names[1:], reference, backend, clients, before_s, after_s))
            finally:
                for process in started:
                    process.terminate()
                for process in started:
                    try:
                        process.wait(15)
                    except subprocess.TimeoutExpired:
                        process.kill()
                for handle in logs.values():
                    handle.close()
            sources = {name: FETCHED.findall((directory / f"{name}.log").read_text()) for name in names[1:]}
    servers = result.pop("servers")
    result["downloads"] = {
        name: [servers.get(source.split("/models/")[0], source) for _, source in found]
        for name, found in sources.items()
    }
    result.update(kind=kind, backend=backend, nodes=nodes, clients=clients)
    return result


async def _scenario(
    connection: ConnectionSettings,
    nodes: list[str],
    reference: ModelRef,
    backend: str,
    clients: int,
    before_s: float,
    after_s: float,
) -> dict[str, Any]:
    link = await FleetLink(connection).open(settle_s=0.5)
    try:
        await _wait_online(link, ["seed", *nodes], 180)
        tally, stop = Tally(), asyncio.Event()
        max_tokens = 16
        loops = [asyncio.create_task(_client_loop(connection, tally, stop, max_tokens)) for _ in range(clients)]
        await asyncio.sleep(before_s)
        change_started = time.monotonic()
        agent_backend = "llamacpp" if backend == "llamacpp" else "echo"
        changes = []
        for node in nodes:
            settings: dict[str, Any] = {"threads": 1, "max_tokens": 16} if backend == "llamacpp" else {}
            agent = DesiredAgent(
                agent_id=f"{node}-math",
                preset="math",
                backend=agent_backend,
                model=reference,
                max_in_flight=2,
                backend_settings={} if backend == "llamacpp" else {"delay_s": 0.2},
                settings=settings,
            )
            changes.append(Change(node, None, DesiredState(node_id=node, generation=1, agents=(agent,))))
        rollout = await roll_out(link, changes, 1, 300, "bench", connection, log=lambda line: None)
        change_ended = time.monotonic()
        servers = {beacon.model_server: node for node, beacon in link.beacons.items() if beacon.model_server}
        await asyncio.sleep(after_s)
        stop.set()
        await asyncio.gather(*loops)
    finally:
        await link.close()
    before = [ms for at, ms in tally.latencies if at < change_started]
    during = [ms for at, ms in tally.latencies if change_started <= at <= change_ended]
    return {
        "servers": servers,
        "rollout_ok": rollout.ok,
        "rollout_why": rollout.why,
        "change_s": round(change_ended - change_started, 1),
        "submitted": tally.submitted,
        "answered": tally.answered,
        "failed": tally.failed,
        "lost": tally.lost,
        "p50_before_ms": round(percentile(before, 0.5), 1) if before else None,
        "p95_before_ms": round(percentile(before, 0.95), 1) if before else None,
        "p50_during_ms": round(percentile(during, 0.5), 1) if during else None,
        "p95_during_ms": round(percentile(during, 0.95), 1) if during else None,
    }


def summary(result: dict[str, Any]) -> str:
    downloads = result["downloads"]
    once_from_peer = all(len(found) == 1 and "://" not in found[0] for found in downloads.values())
    lines = [
        f"{result['kind']}, {result['nodes']} nodes ({result['backend']}), {result['clients']} clients: "
        f"rollout {'ok' if result['rollout_ok'] else 'FAILED: ' + result['rollout_why']} in {result['change_s']} s",
        f"  tasks: {result['submitted']} submitted, {result['answered']} answered, {result['failed']} failed, "
        f"{result['lost']} lost (goal: 0 failed, 0 lost)",
        f"  latency p50/p95: before {result['p50_before_ms']}/{result['p95_before_ms']} ms, "
        f"during the change {result['p50_during_ms']}/{result['p95_during_ms']} ms",
        "  downloaded from: "
        + ", ".join(f"{node} <- {'+'.join(found) or 'nothing'}" for node, found in downloads.items())
        + f" (goal: once per node, from a peer: {'met' if once_from_peer else 'MISSED'})",
    ]
    return "\n".join(lines)
