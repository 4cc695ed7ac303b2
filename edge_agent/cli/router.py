"""`edge-agent router`: host the routing and voting handlers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edge_agent.cli.common import (
    fabric_config,
    fabric_options,
    run_async,
    stop_on_signals,
)
from shared.config import NodeConfig, RouterSettings


@click.command()
@fabric_options
@click.option(
    "--router-id", help="This router's id (default: the one kept in <state_dir>/router-id, created on first start)."
)
@click.option(
    "--state-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where LinUCB state, priors and vote weights are saved (default: <state_dir>/<router id>.linucb.json).",
)
@click.option("--frozen", is_flag=True, help="Evaluation mode: route with the saved state, learn nothing.")
@click.option("--seed", type=int, default=None, help="Seed of the tie-breaking random generator.")
@click.option("--metrics-port", type=int, help="Serve Prometheus metrics on 127.0.0.1:PORT (extra `metrics`).")
@click.option(
    "--teacher",
    "teachers",
    multiple=True,
    help="A client account whose gold answers and labels teach this router (repeat; docs/tenancy.md).",
)
@click.option("--max-deadline", "max_deadline_s", type=float, help="Cap every task's deadline_s at SECONDS.")
@click.option(
    "--share-group",
    help="Share task/submit/+ with the routers of this group ($share/GROUP/...; brokers with shared subscriptions).",
)
def router(
    config_path: Path | None,
    brokers: tuple[str, ...],
    fabric: str | None,
    router_id: str | None,
    state_file: Path | None,
    frozen: bool,
    seed: int | None,
    metrics_port: int | None,
    share_group: str | None,
    teachers: tuple[str, ...],
    max_deadline_s: float | None,
) -> None:
    """Host the Symphony pipeline (planning, Top-L + LinUCB routing, CoT voting) until Ctrl+C."""
    config = fabric_config(config_path, brokers, fabric, metrics_port=metrics_port)
    tenancy = {"teachers": teachers or None, "max_deadline_s": max_deadline_s}
    run_async(_serve(config, router_id, state_file, frozen, seed, share_group, tenancy))


async def _serve(
    config: NodeConfig,
    router_id: str | None,
    state_file: Path | None,
    frozen: bool,
    seed: int | None,
    share_group: str | None = None,
    tenancy: dict[str, Any] | None = None,
) -> None:
    from router.service import RouterService, router_config

    base = config.router or RouterSettings()
    updates = {"router_id": router_id, "state_file": state_file, "seed": seed, "share_group": share_group}
    updates |= tenancy or {}
    try:
        settings = RouterSettings.model_validate(
            {**base.model_dump(), **{key: value for key, value in updates.items() if value is not None}}
        )
    except ValueError as error:  # a teacher name that cannot be an account, a deadline out of range
        raise click.ClickException(str(error)) from None
    try:
        service = RouterService(router_config(config.connection, settings, config.resolved_state_dir(), frozen))
    except ValueError as error:  # an unreadable router-id or state file
        raise click.ClickException(str(error)) from None
    stop = stop_on_signals()
    await service.start()
    metrics = _serve_metrics(service, config.metrics_port) if config.metrics_port is not None else None
    click.echo(f"router {service.router_id} serving fabric {config.connection.fabric!r} (Ctrl+C to stop)")
    click.echo(state_line(service))
    try:
        await stop.wait()
    finally:
        if metrics is not None:
            metrics.close()
        await service.stop()
        click.echo(f"router {service.router_id} stopped; LinUCB state in {service.config.state_file}")


def state_line(service: Any) -> str:
    """Whether the router resumed learned state (and from where) or starts from scratch."""
    updates = service.brain.updates()
    if updates:
        return f"resumed the learned state from {service.config.state_file} ({updates} updates)"
    return f"learning from scratch; state kept in {service.config.state_file}"


def _serve_metrics(service: Any, port: int) -> Any:
    from edge_agent.runtime.prometheus import RouterSample, serve_router_metrics

    def sample() -> RouterSample:
        live = len(service.live_agents())
        return RouterSample(service.router_id, service.runs_dispatched, live, dict(service.brain.reliability))

    metrics = serve_router_metrics(port, sample)
    click.echo(f"metrics of router {service.router_id} on {metrics.url}")
    return metrics
