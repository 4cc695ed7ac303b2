"""Tokens per second through an agent (RunRequest -> RunResult over MQTT) against raw llama-cpp-python.

Run ``python -m bench.agent_throughput [--model PATH] [--max-tokens 64] [--repeats 3] [--threads N]``.

1. raw: ``bench.backend_throughput.raw_tokens_per_second`` on the model and the fixed prompt (greedy);
2. agent: an embedded broker (``edge-agent broker``) and an agent (``edge-agent start --backend llamacpp``) as
   subprocesses on loopback; after one untimed warm-up request, each repeat publishes a RunRequest with the same
   prompt (temperature 0, ``max_tokens``) and waits for the RunResult. The agent's rate is completion tokens over
   the wall-clock time from publish to the result's arrival, so MQTT hops, JSON, the event loop and the chat
   template all count. The agent's own ``latency_ms`` gives the rate inside the worker for comparison.

Prints both figures and their ratio (goal: >= 0.95).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.backend_throughput import FIXED_PROMPT, FIXED_SEED, raw_tokens_per_second
from broker.policy import free_port, wait_for_port

GOAL_RATIO = 0.95
START_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 120.0
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class AgentFigures:
    end_to_end_tps: float  # completion tokens / (publish -> result received)
    in_worker_tps: float  # completion tokens / the agent's own latency_ms
    mean_completion_tokens: float
    mean_overhead_ms: float  # end-to-end time minus the agent's latency_ms, per request


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _measure_agent(
    broker_url: str, fabric: str, node_id: str, max_tokens: int, repeats: int, agent: subprocess.Popen[bytes]
) -> AgentFigures:
    from shared import topics as routes
    from shared.config import ConnectionSettings
    from shared.messages import ErrorReply, NodeBeacon, RunChunk, RunRequest, RunResult, SamplingOptions
    from shared.mqtt import FabricClient, unique_client_id
    from shared.topics import Topics

    topics = Topics(fabric)
    client = FabricClient(ConnectionSettings(fabric=fabric, brokers=(broker_url,)), unique_client_id("bench"))
    beacons: asyncio.Queue[NodeBeacon] = asyncio.Queue()
    results: asyncio.Queue[tuple[float, RunResult]] = asyncio.Queue()

    def on_beacon(topic: str, beacon: NodeBeacon) -> None:
        beacons.put_nowait(beacon)

    def on_result(topic: str, message: RunResult | RunChunk | ErrorReply) -> None:
        if isinstance(message, RunResult):
            results.put_nowait((time.perf_counter(), message))

    inbox = routes.ROUTER_INBOX.on(topics, client.client_id)  # agents answer only in a router's inbox namespace
    reply_topic = inbox.topic_filter
    await client.route(routes.BEACON.on(topics, node_id), on_beacon)
    await client.route(inbox, on_result)
    await client.connect(timeout=30)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if agent.poll() is not None:
                raise RuntimeError(f"the agent exited with {agent.returncode}")
            try:
                beacon = await asyncio.wait_for(beacons.get(), 0.5)
            except asyncio.TimeoutError:
                if time.monotonic() > deadline:
                    raise TimeoutError("the agent did not come online") from None
                continue
            if beacon.status == "online":
                break
        agent_id = beacon.agents[0].agent_id

        async def one(number: int) -> tuple[float, RunResult]:
            request = RunRequest(
                dispatch_id=f"bench-{number}",
                task_id="bench",
                agent_id=agent_id,
                subtask=FIXED_PROMPT,
                instructions="You write short stories.",
                sampling=SamplingOptions(max_tokens=max_tokens, temperature=0.0, seed=FIXED_SEED),
                deadline_s=RUN_TIMEOUT_S,
                reply_topic=reply_topic,
            )
            sent = time.perf_counter()
            client.publish(topics.agent_run(agent_id), request)
            received, result = await asyncio.wait_for(results.get(), RUN_TIMEOUT_S)
            if result.error is not None:
                raise RuntimeError(f"the agent failed: {result.error} {result.error_message}")
            return received - sent, result

        await one(0)  # warm-up, untimed
        runs = [await one(number) for number in range(1, repeats + 1)]
    finally:
        await client.close()
    tokens = sum(result.completion_tokens for _, result in runs)
    wall_s = sum(elapsed for elapsed, _ in runs)
    worker_s = sum(result.latency_ms for _, result in runs) / 1000
    return AgentFigures(
        end_to_end_tps=tokens / wall_s if wall_s > 0 else 0.0,
        in_worker_tps=tokens / worker_s if worker_s > 0 else 0.0,
        mean_completion_tokens=tokens / len(runs),
        mean_overhead_ms=(wall_s - worker_s) * 1000 / len(runs),
    )


def agent_tokens_per_second(
    model_path: Path, max_tokens: int = 64, repeats: int = 3, n_threads: int | None = None
) -> AgentFigures:
    """Start a broker and an agent as subprocesses, measure RunRequest -> RunResult, stop both."""
    workdir = Path(tempfile.mkdtemp(prefix="symphony-bench-"))
    fabric, node_id = f"bench-{uuid.uuid4().hex[:8]}", "bench-agent"
    agent_settings: dict[str, object] = {"backend": "llamacpp", "model": str(model_path), "context_length": 512}
    if n_threads is not None:
        agent_settings["threads"] = n_threads
    config = workdir / "node.yaml"
    config.write_text(yaml.safe_dump({"agents": [agent_settings], "state_dir": str(workdir / "state")}))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    port = free_port()
    command = [sys.executable, "-m", "edge_agent.cli"]
    broker = subprocess.Popen(
        [*command, "broker", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # amqtt logs every probe of the port as an error
    )
    agent: subprocess.Popen[bytes] | None = None
    try:
        wait_for_port(port, timeout=30.0, process=broker)
        url = f"mqtt://127.0.0.1:{port}"
        agent = subprocess.Popen(
            [*command, "start", "-c", str(config), "--broker", url, "--fabric", fabric, "--node-id", node_id],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        return asyncio.run(_measure_agent(url, fabric, node_id, max_tokens, repeats, agent))
    finally:
        if agent is not None:
            _stop(agent)
        _stop(broker)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    """Parse options, measure raw llama.cpp then the agent, print the figures and the ratio."""
    from model_store import default_model_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: bundled SmolLM2)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: cores - 1, both)")
    arguments = parser.parse_args()
    model_path = arguments.model or default_model_path()
    print_summary(measure(model_path, arguments.max_tokens, arguments.repeats, arguments.threads))


def measure(model_path: Path, max_tokens: int = 64, repeats: int = 3, threads: int | None = None) -> dict[str, Any]:
    """Raw llama-cpp-python tokens/s and tokens/s through an agent on the same model and prompt, with the ratio."""
    raw = raw_tokens_per_second(model_path, FIXED_PROMPT, max_tokens, repeats, threads)
    agent = agent_tokens_per_second(model_path, max_tokens, repeats, threads)
    return {
        "model": model_path.name,
        "max_tokens": max_tokens,
        "repeats": repeats,
        "raw_tokens_per_s": round(raw, 1),
        "agent": asdict(agent),
        "ratio": round(agent.end_to_end_tps / raw, 3) if raw > 0 else 0.0,
        "goal_ratio": GOAL_RATIO,
    }


def print_summary(result: dict[str, Any]) -> None:
    agent = result["agent"]
    print(f"model: {result['model']}, max_tokens {result['max_tokens']}, {result['repeats']} repeats, greedy")
    print(f"raw llama-cpp-python:        {result['raw_tokens_per_s']:7.1f} tokens/s")
    print(
        f"agent end to end (MQTT):     {agent['end_to_end_tps']:7.1f} tokens/s "
        f"({agent['mean_completion_tokens']:.0f} tokens/run, {agent['mean_overhead_ms']:.1f} ms/run outside the worker)"
    )
    print(f"agent inside the worker:     {agent['in_worker_tps']:7.1f} tokens/s")
    verdict = "meets" if result["ratio"] >= GOAL_RATIO else "below"
    print(f"ratio agent/raw:             {result['ratio']:7.3f} ({verdict} the goal of {GOAL_RATIO})")


if __name__ == "__main__":
    main()
