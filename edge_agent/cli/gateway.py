"""`edge-agent gateway`: the OpenAI-compatible HTTP API over the fabric, on loopback by default."""

from __future__ import annotations

from pathlib import Path

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
@click.option("--deadline", "deadline_s", type=float, default=120.0, show_default=True, help="Seconds per request.")
def gateway(
    config_path: Path | None,
    brokers: tuple[str, ...],
    fabric: str | None,
    host: str,
    port: int,
    keys_file: Path | None,
    deadline_s: float,
) -> None:
    """Serve the OpenAI API: POST /v1/chat/completions (stream or not), GET /v1/models, GET /health.

    Models: `symphony` (the whole pipeline), `symphony-vote-N` (N voted runs), `agent:<id>` (one agent directly).
    """
    config = fabric_config(config_path, brokers, fabric)
    run_async(_serve(config, host, port, keys_file, deadline_s))


async def _serve(config: NodeConfig, host: str, port: int, keys_file: Path | None, deadline_s: float) -> None:
    try:
        from fleet_gateway.server import GatewayServer
    except ImportError as error:
        raise click.ClickException(f'{error}; install it with `pip install "symphony-edge[gateway]"`') from None
    server = GatewayServer(config.connection, host, port, keys_file, deadline_s)
    check_reachable(config.connection)
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
