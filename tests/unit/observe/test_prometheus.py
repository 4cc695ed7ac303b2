"""Prometheus metric families built from a NodeState and a router sample, and the endpoint on loopback."""

from __future__ import annotations

import urllib.request

import pytest

from edge_agent.runtime.prometheus import RouterSample, node_families, router_families, serve_node_metrics
from shared.messages import AgentState, NodeState

pytest.importorskip("prometheus_client")


def node_state() -> NodeState:
    busy = AgentState(
        agent_id="n1-math",
        load=0.5,
        in_flight=1,
        queue_length=2,
        latency_ema_ms=120.0,
        runs=7,
        errors=2,
        tokens_per_second=42.0,
        latency_p50_ms=100.0,
        latency_p95_ms=300.0,
        available=True,
    )
    fresh = AgentState(agent_id="n1-coder", load=0.0, in_flight=0, queue_length=0, available=False)
    return NodeState(node_id="n1", epoch=3, agents=(busy, fresh))


def samples(families: list[object]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in families:
        for sample in family.samples:  # type: ignore[attr-defined]
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_node_families_carry_the_state_of_every_agent() -> None:
    values = samples(node_families(node_state()))
    math = (("agent", "n1-math"), ("node", "n1"))
    coder = (("agent", "n1-coder"), ("node", "n1"))
    assert values[("symphony_agent_runs_total", math)] == 7
    assert values[("symphony_agent_errors_total", math)] == 2
    assert values[("symphony_agent_latency_p95_ms", math)] == 300.0
    assert values[("symphony_agent_tokens_per_second", math)] == 42.0
    assert values[("symphony_agent_available", coder)] == 0.0
    assert ("symphony_agent_latency_p50_ms", coder) not in values  # no runs yet: no percentile, not a fake 0


def test_router_families() -> None:
    values = samples(router_families(RouterSample("r1", runs_dispatched=9, live_agents=2, reliability={"a": 0.7})))
    assert values[("symphony_router_runs_dispatched_total", (("router", "r1"),))] == 9
    assert values[("symphony_router_live_agents", (("router", "r1"),))] == 2
    assert values[("symphony_router_agent_reliability", (("agent", "a"), ("router", "r1")))] == 0.7


def test_the_endpoint_serves_the_current_state_on_loopback() -> None:
    states = [node_state()]
    server = serve_node_metrics(0, lambda: states[-1])
    try:
        assert server.host == "127.0.0.1"
        text = urllib.request.urlopen(server.url, timeout=10).read().decode()
        assert 'symphony_agent_runs_total{agent="n1-math",node="n1"} 7.0' in text
        states.append(NodeState(node_id="n1", epoch=3, agents=()))
        text = urllib.request.urlopen(server.url, timeout=10).read().decode()
        assert "n1-math" not in text
    finally:
        server.close()
