"""`edge-agent dashboard`: a small live web page of the fabric, served on loopback by default."""

from __future__ import annotations

from pathlib import Path

import click

from edge_agent.cli.common import (
    fabric_config,
    fabric_options,
    run_async,
    stop_on_signals,
)
from shared.config import NodeConfig


@click.command()
@fabric_options
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to serve on (non-loopback needs credentials)."
)
@click.option("--port", type=int, default=8765, show_default=True, help="Port to serve on (0: any free port).")
@click.option(
    "--keys-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The gateway's API keys file: each key shows its own client's tasks (the operator view needs the MQTT login).",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="A host name besides localhost that anonymous loopback requests may address (repeatable).",
)
@click.option(
    "--full-traces/--no-full-traces",
    default=True,
    show_default=True,
    help="Ask the routers for every task's full trace while the dashboard runs (tasks trace a summary otherwise; "
    "an operator account provisioned before this option may not publish the request: use --no-full-traces).",
)
def dashboard(
    config_path: Path | None,
    brokers: tuple[str, ...],
    fabric: str | None,
    host: str,
    port: int,
    keys_file: Path | None,
    allowed_hosts: tuple[str, ...],
    full_traces: bool,
) -> None:
    """Serve a live dashboard: nodes, agents, routers, recent tasks, each task's trace and the router's scores.

    The server subscribes to the fabric and pushes snapshots to the page (server-sent events). On a host other
    than loopback, the page asks for the fabric's MQTT username and password (HTTP basic auth: the operator view),
    or takes one of the gateway's API keys (--keys-file) as a bearer token or as the password of its client
    account (basic auth): that client's own tasks only.
    """
    config = fabric_config(config_path, brokers, fabric)
    allowed = frozenset(name.strip().lower() for name in allowed_hosts)
    run_async(_serve(config, host, port, keys_file, allowed, full_traces))


async def _serve(
    config: NodeConfig, host: str, port: int, keys_file: Path | None, allowed_hosts: frozenset[str], full_traces: bool
) -> None:
    try:
        from fleet_observe.web import DashboardServer
        from shared.http_auth import load_keys
    except ImportError as error:
        raise click.ClickException(f'{error}; install it with `pip install "symphony-edge[gateway]"`') from None

    keys = load_keys(keys_file) if keys_file else None
    server = DashboardServer(config.connection, host, port, keys, allowed_hosts, full_traces)
    stop = stop_on_signals()
    try:
        await server.start()
    except OSError as error:
        await server.close()
        raise click.ClickException(f"cannot serve on {host}:{port}: {error.strerror or error}") from None
    login = " (basic auth: the fabric's MQTT login)" if server.credentials else ""
    if server.api_keys:
        operator = "the MQTT login" if server.credentials else "none without connection.username/password"
        login = f" (API keys: each its own tasks; operator view: {operator})"
    click.echo(f"dashboard of fabric {config.connection.fabric!r} on {server.url}{login} (Ctrl+C to stop)")
    try:
        await stop.wait()
    finally:
        await server.close()
