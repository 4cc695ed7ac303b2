"""`edge-agent dashboard`: a small live web page of the fabric, served on loopback by default."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import click

from edge_agent.cli.common import broker_option, config_option, fabric_option, load_config, run_async
from shared.config import NodeConfig


@click.command()
@config_option
@broker_option
@fabric_option
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to serve on (non-loopback needs credentials)."
)
@click.option("--port", type=int, default=8765, show_default=True, help="Port to serve on (0: any free port).")
def dashboard(config_path: Path | None, brokers: tuple[str, ...], fabric: str | None, host: str, port: int) -> None:
    """Serve a live dashboard: nodes, agents, routers, recent tasks, each task's trace and the router's scores.

    The server subscribes to the fabric and pushes snapshots to the page (server-sent events). On a host other
    than loopback, the page asks for the fabric's MQTT username and password (HTTP basic auth).
    """
    overrides: dict[str, Any] = {"connection.fabric": fabric}
    if brokers:
        overrides["connection.brokers"] = list(brokers)
    run_async(_serve(load_config(config_path, **overrides), host, port))


async def _serve(config: NodeConfig, host: str, port: int) -> None:
    from edge_agent.observe.web import DashboardServer

    server = DashboardServer(config.connection, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    try:
        await server.start()
    except OSError as error:
        await server.close()
        raise click.ClickException(f"cannot serve on {host}:{port}: {error.strerror or error}") from None
    login = " (basic auth: the fabric's MQTT login)" if server.credentials else ""
    click.echo(f"dashboard of fabric {config.connection.fabric!r} on {server.url}{login} (Ctrl+C to stop)")
    try:
        await stop.wait()
    finally:
        await server.close()
