"""Time to first token through the OpenAI-compatible gateway, next to raw llama-cpp-python on the same model.

Run with `edge-agent bench ttft [--repeats N] [--threads T]` (or `python -m bench.gateway_ttft`).

    raw       llama_cpp.Llama.create_chat_completion(stream=True) in this process: first non-empty delta
    gateway   HTTP POST /v1/chat/completions (stream) ─► gateway ─MQTT─► router ─► agent (llama.cpp, same model,
              threads, context and messages) ─► router ─► gateway ─SSE─► first content chunk, read here

Both sides get the same chat (the agent's persona system prompt and its `Task:` framing, built by the same
function), a different question per repeat (so neither reuses a whole cached prompt), greedy sampling, one
warm-up first. Every fabric component is its own process, on mosquitto. Goal: gateway <= raw + 20 ms (median).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.fabric_overhead import broker, processes
from broker.policy import free_port

GOAL_MS = 20.0
PERSONA = "writer"
QUESTIONS = [f"In one short sentence, name colour number {index} of the rainbow." for index in range(1, 64)]


def raw_ttft(model: Path, questions: list[str], threads: int, n_ctx: int) -> list[float]:
    """Seconds to the first token of each question, straight from llama-cpp-python."""
    from llama_cpp import Llama

    from edge_agent.personas import build_messages, get_persona

    llm = Llama(model_path=str(model), n_ctx=n_ctx, n_threads=threads, verbose=False)
    system = get_persona(PERSONA).system_prompt
    times = []
    try:
        for question in questions:
            messages = build_messages(system, question)
            started = time.perf_counter()
            stream = llm.create_chat_completion(messages=messages, max_tokens=4, temperature=0.0, stream=True)  # type: ignore[arg-type]
            for chunk in stream:
                if chunk["choices"][0]["delta"].get("content"):  # type: ignore[index,union-attr]
                    times.append(time.perf_counter() - started)
                    break
            stream.close()  # type: ignore[union-attr]
    finally:
        llm.close()
    return times


def gateway_ttft(port: int, questions: list[str], agent_id: str) -> list[float]:
    """Seconds to the first content chunk of each question, through the gateway (one kept-alive connection)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times = []
    for question in questions:
        body = {
            "model": f"agent:{agent_id}",
            "messages": [{"role": "user", "content": question}],
            "max_tokens": 4,
            "temperature": 0.0,
            "stream": True,
        }
        started = time.perf_counter()
        connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"gateway answered {response.status}: {response.read()[:300]!r}")
        first = None
        for line in response:
            if line.startswith(b"data: {") and first is None:
                choices = json.loads(line[6:])["choices"]
                if choices and choices[0]["delta"].get("content"):
                    first = time.perf_counter() - started
        if first is None:
            raise RuntimeError("the stream had no content")
        times.append(first)
    connection.close()
    return times


def wait_for_gateway(port: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            health = json.loads(connection.getresponse().read())
            connection.close()
            if health["status"] == "ok":
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise TimeoutError("the gateway did not see the agent and the router in time")


def measure(model: Path, repeats: int = 20, threads: int = 1, broker_kind: str = "mosquitto") -> dict[str, Any]:
    n_ctx = 1024
    questions = QUESTIONS[: repeats + 1]
    raw = raw_ttft(model, questions, threads, n_ctx)[1:]  # the first one warms up
    with tempfile.TemporaryDirectory(prefix="ttft-") as temporary, broker(broker_kind, Path(temporary)) as url:
        directory = Path(temporary)
        fabric = f"ttft-{uuid.uuid4().hex[:6]}"
        agent_id = "ttft-llama"
        agent = {
            "agent_id": agent_id,
            "preset": PERSONA,
            "backend": "llamacpp",
            "model": str(model),
            "threads": threads,
            "context_length": n_ctx,
        }
        config = directory / "node.yaml"
        config.write_text(json.dumps({"agents": [agent]}))
        env = dict(os.environ, SYMPHONY_EDGE_STATE_DIR=str(directory / "state"))
        cli = [sys.executable, "-m", "edge_agent.cli"]
        common = ["--broker", url, "--fabric", fabric]
        port = free_port()
        with processes(
            [*cli, "start", "-c", str(config), "--node-id", "ttft-node", *common],
            [*cli, "router", "--router-id", "ttft-router", *common],
            [*cli, "gateway", "--port", str(port), *common],
            env=env,
        ):
            wait_for_gateway(port)
            through = gateway_ttft(port, questions, agent_id)[1:]
    raw_ms, gateway_ms = statistics.median(raw) * 1000, statistics.median(through) * 1000
    return {
        "model": model.name,
        "threads": threads,
        "broker": broker_kind,
        "repeats": repeats,
        "raw_ttft_ms": {"p50": round(raw_ms, 1), "min": round(min(raw) * 1000, 1), "max": round(max(raw) * 1000, 1)},
        "gateway_ttft_ms": {
            "p50": round(gateway_ms, 1),
            "min": round(min(through) * 1000, 1),
            "max": round(max(through) * 1000, 1),
        },
        "overhead_ms": round(gateway_ms - raw_ms, 1),
        "goal_ms": GOAL_MS,
        "goal_met": gateway_ms - raw_ms <= GOAL_MS,
    }


def print_summary(result: dict[str, Any]) -> None:
    raw, through = result["raw_ttft_ms"], result["gateway_ttft_ms"]
    print(
        f"time to first token, {result['model']} ({result['threads']} thread(s), {result['broker']}, "
        f"median of {result['repeats']})"
    )
    print(f"  raw llama-cpp-python  {raw['p50']:8.1f} ms   (min {raw['min']:.1f}, max {raw['max']:.1f})")
    print(f"  through the gateway   {through['p50']:8.1f} ms   (min {through['min']:.1f}, max {through['max']:.1f})")
    verdict = "met" if result["goal_met"] else "MISSED"
    print(f"  overhead              {result['overhead_ms']:8.1f} ms   goal <= {result['goal_ms']:g} ms: {verdict}")


def main(argv: list[str] | None = None) -> None:
    from model_store import default_model_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--broker", choices=["mosquitto", "amqtt"], default="mosquitto")
    arguments = parser.parse_args(argv)
    print_summary(
        measure(arguments.model or default_model_path(), arguments.repeats, arguments.threads, arguments.broker)
    )


if __name__ == "__main__":
    main()
