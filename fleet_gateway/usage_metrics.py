"""Per-key usage of the gateway as Prometheus metrics (`edge-agent gateway --metrics-port`, extra `metrics`).

    symphony_gateway_requests_total{key,client}          chat completions admitted
    symphony_gateway_refused_total{key,client,reason}    refused: a quota, a cap or the body limit
    symphony_gateway_tokens_total{key,client,kind}       prompt / completion tokens of answered tasks
    symphony_gateway_in_flight{key,client}               tasks in flight now
    symphony_gateway_tokens_last_24h{key,client}         what counts against tokens_per_day

Served on 127.0.0.1 by default like the routers' and agents' endpoints: the numbers of every key are for the
operator; a caller reads its own through `GET /v1/usage`.
"""

from __future__ import annotations

from typing import Any

from edge_agent.runtime.prometheus import DEFAULT_HOST, MetricsServer
from fleet_gateway.quotas import QuotaBook


def usage_families(quotas: QuotaBook) -> list[Any]:
    """Metric families of every key's usage (read at scrape time)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    labels = ["key", "client"]
    requests = CounterMetricFamily("symphony_gateway_requests", "Chat completions admitted.", labels=labels)
    refused = CounterMetricFamily(
        "symphony_gateway_refused", "Requests refused by a quota, a cap or the body limit.", labels=[*labels, "reason"]
    )
    tokens = CounterMetricFamily("symphony_gateway_tokens", "Tokens of answered tasks.", labels=[*labels, "kind"])
    in_flight = GaugeMetricFamily("symphony_gateway_in_flight", "Tasks in flight.", labels=labels)
    day = GaugeMetricFamily("symphony_gateway_tokens_last_24h", "Tokens of the last 24 hours.", labels=labels)
    now = quotas.clock()
    for usage in list(quotas.keys.values()):
        values = [usage.label, usage.client]
        requests.add_metric(values, usage.requests)
        for reason, count in sorted(usage.refused.items()):
            refused.add_metric([*values, reason], count)
        tokens.add_metric([*values, "prompt"], usage.prompt_tokens)
        tokens.add_metric([*values, "completion"], usage.completion_tokens)
        in_flight.add_metric(values, usage.in_flight)
        day.add_metric(values, usage.tokens_today(now))
    return [requests, refused, tokens, in_flight, day]


def serve_usage_metrics(port: int, quotas: QuotaBook, host: str = DEFAULT_HOST) -> MetricsServer:
    """Serve the usage of every key on host:port (MetricsUnavailable without prometheus-client or the port)."""
    return MetricsServer(port, lambda: usage_families(quotas), host)
