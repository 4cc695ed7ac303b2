"""`edge-agent status`, `top`, `doctor` and `trace`: look at a running fabric from any machine.

The commands only parse options, drive the I/O seams of `fleet_observe` and print what its pure parts
render; a broker that is unreachable or refuses the credentials ends the command with a clear message and
exit code 1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from edge_agent.cli.common import fabric_config, fabric_options, run_async
from shared.config import ConnectionSettings, NodeConfig

CLEAR_SCREEN = "\x1b[H\x1b[2J"


def _quiet_transport_logs() -> None:
    """The commands report a refused or failed connection themselves; paho's warning would say it twice."""
    if logging.getLogger().getEffectiveLevel() >= logging.WARNING:  # unless -v asked for more
        logging.getLogger("shared.mqtt").setLevel(logging.ERROR)


def _quick_connect(connection: ConnectionSettings, timeout_s: float) -> ConnectionSettings:
    """An observer should fail fast: bound the connect wait by the user's --timeout."""
    return connection.model_copy(update={"connect_timeout_s": timeout_s})


# --- status -------------------------------------------------------------------------------------------------


@click.command()
@fabric_options
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=6.0,
    show_default=True,
    help="Seconds to wait for node states (returns as soon as every online node has reported).",
)
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
    _quiet_transport_logs()
    config = fabric_config(config_path, brokers, fabric)
    snapshot = run_async(_collect(_quick_connect(config.connection, connect_timeout), wait_s))
    from fleet_observe.render import status_text

    now = time.time()
    if as_json:
        click.echo(json.dumps({"fabric": config.connection.fabric, **snapshot.to_dict(now)}, indent=2, default=str))
    else:
        click.echo(f"fabric {config.connection.fabric!r} on {', '.join(config.connection.brokers)}\n")
        click.echo(status_text(snapshot, now))


async def _collect(connection: ConnectionSettings, wait_s: float) -> Any:
    from fleet_observe.watch import FabricWatcher

    watcher = FabricWatcher(connection)
    await watcher.start()
    try:
        await watcher.settle(wait_s)
    finally:
        await watcher.close()
    return watcher.snapshot


# --- top ----------------------------------------------------------------------------------------------------


@click.command()
@fabric_options
@click.option("--interval", "interval_s", type=float, default=2.0, show_default=True, help="Seconds between redraws.")
@click.option("--iterations", type=int, default=None, help="Stop after N redraws (default: until Ctrl+C).")
@click.option("--tasks", "task_count", type=int, default=10, show_default=True, help="Recent tasks shown.")
@click.option("--clear/--no-clear", default=None, help="Clear the screen between redraws [default: on a terminal].")
def top(
    config_path: Path | None,
    brokers: tuple[str, ...],
    fabric: str | None,
    interval_s: float,
    iterations: int | None,
    task_count: int,
    clear: bool | None,
) -> None:
    """Live view of the fabric: nodes, agents, routers and recent tasks with their latency."""
    _quiet_transport_logs()
    config = fabric_config(config_path, brokers, fabric)
    clear = sys.stdout.isatty() if clear is None else clear
    run_async(_top(config.connection, max(0.1, interval_s), iterations, task_count, clear))


async def _top(
    connection: ConnectionSettings, interval_s: float, iterations: int | None, tasks: int, clear: bool
) -> None:
    from fleet_observe.render import status_text, tasks_text
    from fleet_observe.watch import FabricWatcher
    from shared.topics import Topics

    watcher = FabricWatcher(_quick_connect(connection, 5.0), task_events=Topics(connection.fabric).all_task_events())
    await watcher.start()
    drawn = 0
    try:
        await watcher.settle(min(interval_s, 1.0))
        while iterations is None or drawn < iterations:
            now = time.time()
            recent = tasks_text(watcher.snapshot.recent_tasks(tasks), now)
            screen = f"{status_text(watcher.snapshot, now)}\n\nrecent tasks\n{recent}"
            header = f"edge-agent top: fabric {connection.fabric!r} at {time.strftime('%H:%M:%S')}"
            # color=True keeps the escape sequence, which click strips by default when stdout is not a terminal
            click.echo(f"{CLEAR_SCREEN if clear else ''}{header}\n\n{screen}\n", color=clear)
            drawn += 1
            if iterations is None or drawn < iterations:
                await asyncio.sleep(interval_s)
    finally:
        await watcher.close()


# --- trace --------------------------------------------------------------------------------------------------


@click.command()
@click.argument("task_id")
@fabric_options
@click.option("--timeout", "timeout_s", type=float, default=120.0, show_default=True, help="Seconds to follow.")
def trace(
    task_id: str, config_path: Path | None, brokers: tuple[str, ...], fabric: str | None, timeout_s: float
) -> None:
    """Follow TASK_ID's events live until it is answered or failed (exit 1 on failure or timeout)."""
    _quiet_transport_logs()
    from shared.topics import Topics, validate_id

    try:
        validate_id(task_id, "task id")
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="TASK_ID") from None
    config = fabric_config(config_path, brokers, fabric)
    click.echo(f"following task {task_id} on fabric {config.connection.fabric!r} (up to {timeout_s:g} s)")
    topic = _trace_topic(config, Topics(config.connection.fabric), task_id)
    # An operator (or anyone on an open broker) asks the routers for full traces, as the dashboard does: a task
    # traces a summary unless someone follows it. A client account may not ask (its tasks trace as they asked).
    full_traces = config.role != "client"
    connection = _quick_connect(config.connection, min(timeout_s, 10.0))
    outcome = run_async(_follow(connection, topic, timeout_s, full_traces))
    if outcome != "answered":
        raise click.ClickException(
            f"task {task_id} failed"
            if outcome == "failed"
            else f"task {task_id}: no final event within {timeout_s:g} s"
        )


def _trace_topic(config: NodeConfig, topics: Any, task_id: str) -> str:
    """A client account reads only its own tasks' events; an operator (or an open broker) reads any task's."""
    if config.role == "client":
        return str(topics.task_events(config.connection.username or config.node_id, task_id))
    return str(topics.any_client_task_events(task_id))


async def _follow(connection: ConnectionSettings, topic: str, timeout_s: float, full_traces: bool = False) -> str:
    from fleet_observe.render import event_line
    from fleet_observe.snapshot import FINAL_EVENTS
    from fleet_observe.watch import FabricWatcher

    watcher = FabricWatcher(connection, task_events=topic, full_traces=full_traces)
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


# --- doctor -------------------------------------------------------------------------------------------------


@click.command()
@fabric_options
@click.option("--node-id", help="The node to check (default: the config's node_id, else the host name).")
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=None,
    help="Seconds to wait for a node state (default: the state interval + 1, at most 10).",
)
@click.option("--timeout", "timeout_s", type=float, default=3.0, show_default=True, help="Seconds per network probe.")
@click.option("--load-model", is_flag=True, help="Also load each local model with llama.cpp (slow).")
def doctor(
    config_path: Path | None,
    brokers: tuple[str, ...],
    fabric: str | None,
    node_id: str | None,
    wait_s: float | None,
    timeout_s: float,
    load_model: bool,
) -> None:
    """Check the broker, credentials, TLS, ACLs, this node's beacon, clocks, models and backends.

    Prints PASS, FAIL or WARN per check with a fix under each failure; exits 1 when any check FAILs.
    """
    _quiet_transport_logs()
    from fleet_observe.checks import exit_code, report_lines
    from fleet_observe.local import check_auto_backend, check_models

    config = fabric_config(config_path, brokers, fabric, node_id=node_id)
    window = wait_s if wait_s is not None else min(config.state_interval_s + 1.0, 10.0)
    operator = config.role == "operator"  # an operator runs no agents: no models nor backends to check
    click.echo(f"doctor: {'operator' if operator else 'node'} {config.node_id!r}, fabric {config.connection.fabric!r}")
    results = run_async(_network_checks(config, timeout_s, window))
    for line in report_lines(results):
        click.echo(line)
    local = [] if operator else [*check_models(config, load_model), check_auto_backend(config)]
    for line in report_lines(local):
        click.echo(line)
    failures = exit_code([*results, *local])
    click.echo("all checks passed" if not failures else "some checks failed")
    raise SystemExit(failures)


async def _network_checks(config: NodeConfig, timeout_s: float, wait_s: float) -> list[Any]:
    """Broker checks in order; a failure of one level (TCP, TLS, login) skips the levels above it."""
    from fleet_observe import checks, probes

    connection = config.connection
    results = []
    for url in connection.broker_urls():
        results.append(checks.broker_reachable(str(url), await probes.tcp_error(url, timeout_s)))
        if results[-1].ok and url.scheme == "mqtts":
            error, version = await probes.tls_error(url, connection, timeout_s)
            results.append(checks.tls_handshake(str(url), error, version))
    if not all(result.ok for result in results):
        return results
    client, error = await probes.login(connection, timeout_s)
    results.append(checks.credentials_accepted(str(connection.broker_urls()[0]), connection.username, error))
    if client is None:
        return results
    try:
        if config.role == "operator":
            return results + await _operator_checks(client, config, wait_s)
        return results + await _fabric_checks(client, config, timeout_s, wait_s)
    finally:
        await client.close()


async def _fabric_checks(client: Any, config: NodeConfig, timeout_s: float, wait_s: float) -> list[Any]:
    """ACL round trips, then what the fabric says about this node id (beacon, duplicates, clock)."""
    import socket

    from fleet_observe import checks, probes
    from shared.topics import Topics

    topics = Topics(config.connection.fabric)
    state_topic = topics.state(config.node_id)
    echoed, rtt_ms = await probes.echo(client, state_topic, timeout_s)
    results = [checks.acl_round_trip("publish and read my state topic", state_topic, echoed, rtt_ms)]
    seen = await probes.observe_node(client, topics, config.node_id, wait_s)
    run_topic = topics.agent_run(_probe_agent(config, seen.beacon))
    run_echoed, run_rtt_ms = await probes.echo(client, run_topic, timeout_s)
    # A provisioned node account may read its run topic but not write it (routers do), so without an echo
    # the read permission is unproven rather than missing; only an anonymous broker (no ACL) makes it a FAIL.
    required = config.connection.username is None
    results.append(checks.acl_round_trip("read my run topic", run_topic, run_echoed, run_rtt_ms, required))
    results.append(checks.beacon_visible(config.node_id, seen.beacon, seen.alive, wait_s))
    my_host = socket.gethostname()
    results.append(checks.duplicate_node_id(config.node_id, seen.beacon, seen.alive, my_host, seen.state_epochs))
    sample = seen.clock_sample()
    rtt_s = (rtt_ms or 0.0) / 1000
    if sample is None:
        results.append(checks.clock_skew(None, None, 0.0, rtt_s))
    else:
        results.append(checks.clock_skew(sample[0].node_id, sample[0].sent_at, sample[1], rtt_s))
    return results


async def _operator_checks(client: Any, config: NodeConfig, wait_s: float) -> list[Any]:
    """An operator account publishes nothing: check that it reads what status, top and dashboard need."""
    from fleet_observe import checks, probes
    from shared.topics import Topics

    seen = await probes.observe_fabric(client, Topics(config.connection.fabric), wait_s)
    return [
        checks.operator_reads("node beacons", seen.beacons, wait_s),
        checks.operator_reads("node states", seen.states, wait_s),
        checks.operator_reads("router presences", seen.routers, wait_s, required=False),
    ]


def _probe_agent(config: NodeConfig, beacon: Any) -> str:
    """The agent whose run topic the ACL probe uses: the config's first, else the live node's first."""
    from fleet_observe.local import agents_of

    if not config.agents and beacon is not None and beacon.agents:
        return str(beacon.agents[0].agent_id)
    return agents_of(config)[0][0]
