"""`edge-agent status`, `top`, `doctor` and `trace`: look at a running fabric from any machine.

The commands only parse options, drive the I/O seams of `edge_agent.observe` and print what its pure parts
render; a broker that is unreachable or refuses the credentials ends the command with a clear message and
exit code 1.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import click

from edge_agent.cli.common import broker_option, config_option, fabric_option, load_config, run_async
from shared.config import ConnectionSettings, NodeConfig

CLEAR_SCREEN = "\x1b[H\x1b[2J"


def _config(config_path: Path | None, brokers: tuple[str, ...], fabric: str | None, **extra: Any) -> NodeConfig:
    overrides: dict[str, Any] = {"connection.fabric": fabric, **extra}
    if brokers:
        overrides["connection.brokers"] = list(brokers)
    return load_config(config_path, **overrides)


def _quick_connect(connection: ConnectionSettings, timeout_s: float) -> ConnectionSettings:
    """An observer should fail fast: bound the connect wait by the user's --timeout."""
    return connection.model_copy(update={"connect_timeout_s": timeout_s})


# --- status -------------------------------------------------------------------------------------------------


@click.command()
@config_option
@broker_option
@fabric_option
@click.option("--wait", "wait_s", type=float, default=1.5, show_default=True, help="Seconds to collect states.")
@click.option("--connect-timeout", type=float, default=5.0, show_default=True, help="Seconds to reach the broker.")
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON.")
def status(
    config_path: Path | None,
    brokers: tuple[str, ...],
    fabric: str | None,
    wait_s: float,
    connect_timeout: float,
    as_json: bool,
) -> None:
    """Show the nodes, agents and routers of the fabric (one snapshot)."""
    config = _config(config_path, brokers, fabric)
    snapshot = run_async(_collect(_quick_connect(config.connection, connect_timeout), wait_s))
    from edge_agent.observe.render import status_text

    now = time.time()
    if as_json:
        click.echo(json.dumps({"fabric": config.connection.fabric, **snapshot.to_dict(now)}, indent=2, default=str))
    else:
        click.echo(f"fabric {config.connection.fabric!r} on {', '.join(config.connection.brokers)}\n")
        click.echo(status_text(snapshot, now))


async def _collect(connection: ConnectionSettings, wait_s: float) -> Any:
    from edge_agent.observe.watch import FabricWatcher

    watcher = FabricWatcher(connection)
    await watcher.start()
    try:
        await watcher.settle(wait_s)
    finally:
        await watcher.close()
    return watcher.snapshot


# --- trace --------------------------------------------------------------------------------------------------


@click.command()
@click.argument("task_id")
@config_option
@broker_option
@fabric_option
@click.option("--timeout", "timeout_s", type=float, default=120.0, show_default=True, help="Seconds to follow.")
def trace(
    task_id: str, config_path: Path | None, brokers: tuple[str, ...], fabric: str | None, timeout_s: float
) -> None:
    """Follow TASK_ID's events live until it is answered or failed (exit 1 on failure or timeout)."""
    from shared.topics import Topics, validate_id

    try:
        validate_id(task_id, "task id")
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="TASK_ID") from None
    config = _config(config_path, brokers, fabric)
    click.echo(f"following task {task_id} on fabric {config.connection.fabric!r} (up to {timeout_s:g} s)")
    topic = Topics(config.connection.fabric).task_events(task_id)
    outcome = run_async(_follow(_quick_connect(config.connection, min(timeout_s, 10.0)), topic, timeout_s))
    if outcome != "answered":
        raise click.ClickException(
            f"task {task_id} failed"
            if outcome == "failed"
            else f"task {task_id}: no final event within {timeout_s:g} s"
        )


async def _follow(connection: ConnectionSettings, topic: str, timeout_s: float) -> str:
    from edge_agent.observe.render import event_line
    from edge_agent.observe.snapshot import FINAL_EVENTS
    from edge_agent.observe.watch import FabricWatcher

    watcher = FabricWatcher(connection, task_events=topic)
    await watcher.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    started_at: float | None = None
    try:
        while True:
            try:
                event = await asyncio.wait_for(watcher.events.get(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                return "timeout"
            started_at = event.at if started_at is None else started_at
            click.echo(event_line(event, started_at))
            if event.event in FINAL_EVENTS:
                return event.event
    finally:
        await watcher.close()
