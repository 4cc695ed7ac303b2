"""`edge-agent gateway`: the OpenAI-compatible HTTP API over the fabric, on loopback by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edge_agent.cli.common import (
    check_reachable,
    fabric_config,
    fabric_options,
    run_async,
    stop_on_signals,
)
from shared.config import NodeConfig


@click.command()
@fabric_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on (non-loopback: API keys).")
@click.option("--port", type=int, default=8000, show_default=True, help="Port to serve on (0: any free port).")
@click.option(
    "--keys-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="API keys → client accounts (gateway/api-keys.yaml from `edge-agent provision render`).",
)
@click.option(
    "--deadline", "deadline_s", type=float, default=120.0, show_default=True, help="Most seconds per request."
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1024),
    default=4 * 1024 * 1024,
    show_default=True,
    help="Largest request body; a larger one is answered 413 while it arrives.",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="A host name besides localhost that anonymous loopback requests may address (repeatable).",
)
@click.option("--metrics-port", type=int, help="Serve per-key usage as Prometheus metrics on 127.0.0.1:PORT.")
def gateway(
    config_path: Path | None,
    brokers: tuple[str, ...],
    fabric: str | None,
    host: str,
    port: int,
    keys_file: Path | None,
    deadline_s: float,
    max_body_bytes: int,
    allowed_hosts: tuple[str, ...],
    metrics_port: int | None,
) -> None:
    """Serve the OpenAI API: POST /v1/chat/completions (stream or not), GET /v1/models, GET /health.

    Models: `symphony` (the whole pipeline), `symphony-vote-N` (N voted runs), `agent:<id>` (one agent directly).
    GET /v1/usage: the caller's own key (requests, tokens, refusals, quotas from the keys file).
    """
    config = fabric_config(config_path, brokers, fabric)
    allowed = frozenset(name.strip().lower() for name in allowed_hosts)
    run_async(_serve(config, host, port, keys_file, deadline_s, (max_body_bytes, allowed), metrics_port))


async def _serve(
    config: NodeConfig,
    host: str,
    port: int,
    keys_file: Path | None,
    deadline_s: float,
    limits_given: tuple[int, frozenset[str]],
    metrics_port: int | None,
) -> None:
    try:
        from fleet_gateway.limits import GatewayLimits
        from fleet_gateway.server import GatewayServer
    except ImportError as error:
        raise click.ClickException(f'{error}; install it with `pip install "symphony-edge[gateway]"`') from None
    limits = GatewayLimits(*limits_given)
    server = GatewayServer(config.connection, host, port, keys_file, deadline_s, limits)
    check_reachable(config.connection)
    metrics = _serve_metrics(server, metrics_port) if metrics_port is not None else None
    stop = stop_on_signals()
    try:
        await server.start()
    except OSError as error:
        raise click.ClickException(f"cannot serve on {host}:{port}: {error.strerror or error}") from None
    keys = f"{len(server.auth.keys)} API key(s)" if server.auth.keys else "anonymous (loopback only)"
    click.echo(f"OpenAI-compatible gateway of fabric {config.connection.fabric!r} on {server.url}/v1 ({keys})")
    try:
        await stop.wait()
    finally:
        await server.close()
        if metrics is not None:
            metrics.close()


def _serve_metrics(server: Any, port: int) -> Any:
    from edge_agent.runtime.prometheus import MetricsUnavailable
    from fleet_gateway.usage_metrics import serve_usage_metrics

    try:
        metrics = serve_usage_metrics(port, server.quotas)
    except MetricsUnavailable as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"per-key usage metrics on {metrics.url}")
    return metrics
