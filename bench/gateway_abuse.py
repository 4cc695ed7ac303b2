"""What a bad request costs the gateway: seconds and memory (RSS) per oversized body, requests past a quota.

Run with `python -m bench.gateway_abuse [--json]`. The gateway is `edge-agent gateway` in its own process on a
mosquitto broker, with a keys file; curl sends each body at once without waiting for `100 Continue` (as a
careless or hostile client does); the body is valid JSON (one huge user message). A thread samples the
gateway's RSS every 5 ms.

    wrong key, 200 MiB body      goal: answered 401, RSS growth under 16 MiB
    valid key, 200 MiB body      goal: answered 413, RSS growth under 16 MiB (the default limit is 4 MiB)
    malformed JSON, wrong key    goal: 401
    30 requests, quota 5/minute  goal: 5 admitted (the rest 429 with Retry-After)

Before the front door (commit 5641aa3) the first request took 1.8 s and ~800 MiB: the body was read and parsed
before the key was looked at, and nothing limited its size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.fabric_overhead import broker, processes
from broker.policy import free_port

KEY = "sk-symphony-bench-0123456789"
QUOTA_KEY = "sk-symphony-quota-0123456789"
BIG_MIB = 200
RSS_GOAL_MIB = 16
QUOTA_PER_MINUTE = 5
FLOOD = 30


class RssSampler:
    """The peak resident memory of a process while a block runs (sampled every 5 ms)."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.baseline = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self.baseline = self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.baseline) / 2**20


def curl(url: str, key: str, *arguments: str) -> tuple[int, float]:
    """HTTP status and seconds of one POST /v1/chat/completions by curl (no `Expect: 100-continue`)."""
    command = [
        "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "120", "-H", "Expect:",
        "-H", f"Authorization: Bearer {key}", "-H", "Content-Type: application/json", *arguments,
        url + "/v1/chat/completions",
    ]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    return int(result.stdout or 0), time.perf_counter() - started


def bad_body(url: str, pid: int, key: str, body_file: Path) -> dict[str, Any]:
    with RssSampler(pid) as rss:
        status, seconds = curl(url, key, "--data-binary", f"@{body_file}")
    time.sleep(0.5)  # what is left after the request (memory the gateway kept)
    after = rss.process.memory_info().rss
    return {
        "status": status,
        "seconds": round(seconds, 3),
        "rss_growth_mib": round(rss.growth_mib, 1),
        "rss_kept_mib": round((after - rss.baseline) / 2**20, 1),
    }


def measure(broker_kind: str = "mosquitto") -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        keys = directory / "api-keys.yaml"
        keys.write_text(
            f"keys:\n  - key: {KEY}\n    client: bench\n"
            f"  - key: {QUOTA_KEY}\n    client: quota\n    quota: {{requests_per_minute: {QUOTA_PER_MINUTE}}}\n"
        )
        big = directory / "big.json"
        with big.open("wb") as stream:  # valid JSON: one user message of BIG_MIB MiB
            stream.write(b'{"model": "symphony", "messages": [{"role": "user", "content": "')
            chunk = b"x" * 2**20
            for _ in range(BIG_MIB):
                stream.write(chunk)
            stream.write(b'"}]}')
        with broker(broker_kind, directory) as url:
            port = free_port()
            command = [
                sys.executable, "-m", "edge_agent.cli", "gateway", "--broker", url, "--fabric",
                f"abuse-{uuid.uuid4().hex[:6]}", "--port", str(port), "--keys-file", str(keys),
            ]  # fmt: skip
            with processes(command, env=dict(os.environ)) as (gateway,):
                base = f"http://127.0.0.1:{port}"
                _wait_ready(base)
                result: dict[str, Any] = {"broker": broker_kind, "body_mib": BIG_MIB}
                result["wrong_key"] = bad_body(base, gateway.pid, "sk-wrong", big)
                result["valid_key"] = bad_body(base, gateway.pid, KEY, big)
                result["malformed_wrong_key"] = curl(base, "sk-wrong", "--data", "{not json")[0]
                statuses = [curl(base, QUOTA_KEY, "--data", "{}")[0] for _ in range(FLOOD)]
                result["flood"] = {
                    "sent": FLOOD,
                    "quota": QUOTA_PER_MINUTE,
                    "admitted": sum(status != 429 for status in statuses),
                    "refused_429": statuses.count(429),
                }
        return result


def _wait_ready(base: str) -> None:
    import urllib.request

    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(base + "/health", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the gateway did not start") from None
            time.sleep(0.1)


def print_summary(result: dict[str, Any]) -> None:
    print(f"gateway abuse ({result['broker']}, a {result['body_mib']} MiB body sent without waiting)")
    for name, expected in (("wrong_key", 401), ("valid_key", 413)):
        row = result[name]
        print(
            f"  {name:<10} HTTP {row['status']} (goal {expected}) in {row['seconds']:.2f} s, "
            f"RSS +{row['rss_growth_mib']} MiB at peak (goal < {RSS_GOAL_MIB}), +{row['rss_kept_mib']} MiB kept"
        )
    print(f"  malformed JSON, wrong key: HTTP {result['malformed_wrong_key']} (goal 401)")
    flood = result["flood"]
    print(
        f"  {flood['sent']} requests at a quota of {flood['quota']}/minute: {flood['admitted']} admitted "
        f"(goal {flood['quota']}), {flood['refused_429']} answered 429"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="mosquitto", choices=["mosquitto", "amqtt"])
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    result = measure(arguments.broker)
    print(json.dumps(result, indent=2)) if arguments.json else print_summary(result)


if __name__ == "__main__":
    main()
