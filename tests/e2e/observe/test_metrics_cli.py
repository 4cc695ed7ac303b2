"""`edge-agent start --metrics-port` and `edge-agent router --metrics-port`: Prometheus text on loopback."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest

from broker.policy import free_port

pytest.importorskip("prometheus_client")


def scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def test_agent_and_router_expose_per_agent_metrics_that_count_runs(fleet: Any) -> None:
    node_port, router_port = free_port(), free_port()
    common = ("--broker", fleet.broker.url, "--fabric", fleet.fabric)
    fleet.spawn(
        "board-a",
        *("start", *common, "--node-id", "board-a", "--backend", "echo", "--preset", "math"),
        *("--metrics-port", str(node_port)),
        ready=f"metrics of node board-a on http://127.0.0.1:{node_port}/metrics",
    )
    fleet.spawn(
        "router-1",
        *("router", *common, "--router-id", "router-1", "--metrics-port", str(router_port)),
        ready="router router-1 serving",
    )
    assert 'symphony_agent_runs_total{agent="board-a-math",node="board-a"} 0.0' in scrape(node_port)
    submitted = fleet.cli("submit", "What is 2 + 3?", *common, "--no-trace", "--cot-count", "1")
    assert submitted.returncode == 0, submitted.stderr
    text = scrape(node_port)
    assert 'symphony_agent_runs_total{agent="board-a-math",node="board-a"} 1.0' in text
    assert 'symphony_agent_latency_p95_ms{agent="board-a-math",node="board-a"}' in text
    router_text = scrape(router_port)
    assert 'symphony_router_runs_dispatched_total{router="router-1"} 1.0' in router_text
    assert 'symphony_router_agent_reliability{agent="board-a-math",router="router-1"}' in router_text
