"""Optional Prometheus endpoint of a node (per-agent gauges and counters) or a router (`--metrics-port`).

The numbers are the ones a node already puts in its NodeState, read at scrape time through a callback, so
nothing is counted twice and the endpoint can never disagree with the fabric. prometheus-client is imported
only when an endpoint is asked for (extra `metrics`); the server binds 127.0.0.1 unless told otherwise.

    symphony_agent_runs_total{node,agent}            runs finished (counter)
    symphony_agent_errors_total{node,agent}          runs that ended in an error (counter)
    symphony_agent_load, _in_flight, _queue_length   current load (gauges)
    symphony_agent_latency_ema_ms, _latency_p50_ms, _latency_p95_ms, _tokens_per_second
    symphony_agent_available                         1 while the agent's queue has room
    symphony_router_runs_dispatched_total{router}, symphony_router_live_agents{router},
    symphony_router_agent_reliability{router,agent}
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from shared.errors import SymphonyError
from shared.messages import NodeState

DEFAULT_HOST = "127.0.0.1"
INSTALL_HINT = 'the Prometheus endpoint needs prometheus-client: pip install "symphony-edge[metrics]"'

AGENT_GAUGES = {
    "load": "Share of the agent's run slots in use (0..1).",
    "in_flight": "Runs in progress.",
    "queue_length": "Runs waiting for a slot.",
    "latency_ema_ms": "Exponential moving average of run latency, ms.",
    "latency_p50_ms": "Median run latency over the recent window, ms.",
    "latency_p95_ms": "95th percentile run latency over the recent window, ms.",
    "tokens_per_second": "Generation speed of the latest run (or the warm-up), tokens/s.",
}


class MetricsUnavailable(SymphonyError):
    """prometheus-client is missing, or the port cannot be bound."""


@dataclass(frozen=True)
class RouterSample:
    router_id: str
    runs_dispatched: int
    live_agents: int
    reliability: dict[str, float] = field(default_factory=dict)


def node_families(state: NodeState) -> list[Any]:
    """Metric families of one NodeState (pure apart from building prometheus-client objects)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    labels = ["node", "agent"]
    runs = CounterMetricFamily("symphony_agent_runs", "Runs finished by the agent.", labels=labels)
    errors = CounterMetricFamily("symphony_agent_errors", "Runs that ended in an error.", labels=labels)
    available = GaugeMetricFamily("symphony_agent_available", "1 while the agent accepts runs.", labels=labels)
    gauges = {
        name: GaugeMetricFamily(f"symphony_agent_{name}", text, labels=labels) for name, text in AGENT_GAUGES.items()
    }
    for agent in state.agents:
        values = [state.node_id, agent.agent_id]
        runs.add_metric(values, agent.runs)
        errors.add_metric(values, agent.errors)
        available.add_metric(values, 1.0 if agent.available else 0.0)
        for name, family in gauges.items():
            value = getattr(agent, name)
            if value is not None:
                family.add_metric(values, float(value))
    return [runs, errors, available, *gauges.values()]


def router_families(sample: RouterSample) -> list[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    router = [sample.router_id]
    dispatched = CounterMetricFamily("symphony_router_runs_dispatched", "Runs sent to agents.", labels=["router"])
    dispatched.add_metric(router, sample.runs_dispatched)
    live = GaugeMetricFamily("symphony_router_live_agents", "Agents the router can route to.", labels=["router"])
    live.add_metric(router, sample.live_agents)
    reliability = GaugeMetricFamily(
        "symphony_router_agent_reliability", "Learned vote weight of an agent (0..1).", labels=["router", "agent"]
    )
    for agent_id, weight in sorted(sample.reliability.items()):
        reliability.add_metric([sample.router_id, agent_id], weight)
    return [dispatched, live, reliability]


class CallbackCollector:
    """A prometheus-client collector that builds its families from a callback at each scrape."""

    def __init__(self, families: Callable[[], list[Any]]) -> None:
        self._families = families

    def collect(self) -> Iterator[Any]:
        yield from self._families()


class MetricsServer:
    """An HTTP endpoint serving one collector in its own registry (so two in a process do not clash)."""

    def __init__(self, port: int, families: Callable[[], list[Any]], host: str = DEFAULT_HOST) -> None:
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            raise MetricsUnavailable(INSTALL_HINT) from None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(CallbackCollector(families))
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as error:
            raise MetricsUnavailable(f"cannot serve metrics on {host}:{port}: {error.strerror or error}") from None
        self.host, self.port = host, self._server.server_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve_node_metrics(port: int, state: Callable[[], NodeState], host: str = DEFAULT_HOST) -> MetricsServer:
    return MetricsServer(port, lambda: node_families(state()), host)


def serve_router_metrics(port: int, sample: Callable[[], RouterSample], host: str = DEFAULT_HOST) -> MetricsServer:
    return MetricsServer(port, lambda: router_families(sample()), host)
