"""`edge-agent fleet apply|status` and `edge-agent drain|undrain`: run a fleet over the fabric, without Ansible.

The commands parse options and call `provisioning.desired` (what each node should run) and
`provisioning.rollout` (publishing and watching); they need an operator account (`-c operators/<id>.yaml`).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from edge_agent.cli.common import fabric_config, fabric_options, run_async
from shared.config import ConnectionSettings


@click.group()
def fleet() -> None:
    """Desired state of every node: publish it from the fleet file, and see who converged."""


@fleet.command()
@click.argument("fleet_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("-i", "--inventory", type=click.Path(path_type=Path), help="Ansible inventory (default: beside it).")
@fabric_options
@click.option(
    "--rolling", type=int, default=None, help="Canary first, then N nodes at a time (rolled back on failure)."
)
@click.option("--node", "nodes", multiple=True, help="Only these nodes (repeatable).")
@click.option("--deadline", "deadline_s", type=float, default=300.0, show_default=True, help="Seconds per step.")
@click.option("--probe/--no-probe", default=True, help="Ask each new agent a question (needs a router; rolling only).")
@click.option("--wait/--no-wait", default=True, help="Without --rolling: wait for every node to converge.")
@click.option("--dry-run", is_flag=True, help="Print what would change; publish nothing.")
@click.option(
    "--model-source",
    help="A model server (`edge-agent models serve`) nodes may fetch from when no peer holds a model yet.",
)
@click.option(
    "--kit",
    "kit_wheel",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="A symphony-edge wheel every node of the fleet file should run (installed by its kit updater).",
)
def apply(
    fleet_file: Path,
    inventory: Path | None,
    config_path: Path | None,
    brokers: tuple[str, ...],
    fabric: str | None,
    rolling: int | None,
    nodes: tuple[str, ...],
    deadline_s: float,
    probe: bool,
    wait: bool,
    dry_run: bool,
    model_source: str | None,
    kit_wheel: Path | None,
) -> None:
    """Publish each node's desired state from FLEET_FILE (the file `edge-agent provision` reads).

    With --kit, the nodes also upgrade (or downgrade) their kit to that wheel: they fetch it from peers (the node
    that holds it, or --model-source serving it), drain, install it through their kit updater and restart.
    """
    if rolling is not None and rolling < 1:
        raise click.UsageError("--rolling takes a batch size of at least 1")
    from provisioning.errors import ProvisioningError

    config = fabric_config(config_path, brokers, fabric)
    try:
        wanted = _wanted(fleet_file, inventory, model_source)
        kit = _kit(kit_wheel, model_source) if kit_wheel is not None else None
    except ProvisioningError as error:
        raise click.ClickException(str(error)) from None
    connection = config.connection.model_copy(update={"fabric": _fleet_fabric(fleet_file, config.connection)})
    issued_by = connection.username or config.node_id
    code = run_async(
        _apply(connection, wanted, set(nodes) or None, rolling, deadline_s, probe, wait, dry_run, issued_by, kit)
    )
    sys.exit(code)


def _fleet_fabric(fleet_file: Path, connection: ConnectionSettings) -> str:
    from provisioning.fleet import load_fleet

    return load_fleet(fleet_file).fabric if connection.fabric == "default" else connection.fabric


def _wanted(fleet_file: Path, inventory: Path | None, model_source: str | None) -> dict[str, Any]:
    from provisioning.artifacts import default_cache, model_file
    from provisioning.desired import wanted_agents
    from provisioning.errors import ProvisioningError
    from provisioning.fleet import load_fleet
    from provisioning.inventory import load_inventory
    from provisioning.plan import plan_fleet

    inventory = inventory or _beside(fleet_file)
    plan = plan_fleet(load_fleet(fleet_file), load_inventory(inventory))

    def locate(spec: str) -> Path:
        local = Path(spec).expanduser()
        local = local if local.is_absolute() else fleet_file.parent / local
        if local.is_file():  # hashed where it is: a cached copy of the same name may be another file
            return local
        path = model_file(spec, default_cache(), fleet_file.parent, log=lambda line: click.echo(line, err=True)).path
        if path.is_dir():
            raise ProvisioningError(f"model {spec!r} is a directory (MLX): only model files travel over the fabric")
        return path

    if model_source is not None and not model_source.startswith(("http://", "https://")):
        raise ProvisioningError(f"--model-source must be an http(s) URL, not {model_source!r}")
    return wanted_agents(plan, locate, model_source)


def _kit(wheel: Path, model_source: str | None) -> Any:
    from provisioning.desired import kit_reference
    from provisioning.errors import ProvisioningError
    from shared.messages import wheel_version

    try:
        wheel_version(wheel.name)
    except ValueError as error:
        raise ProvisioningError(f"--kit: {error}") from None
    return kit_reference(wheel, model_source)


def _beside(fleet_file: Path) -> Path:
    for name in ("inventory.ini", "inventory.yml", "inventory.yaml", "hosts", "hosts.ini"):
        if (fleet_file.parent / name).is_file():
            return fleet_file.parent / name
    raise click.UsageError("give the inventory with -i/--inventory")


async def _apply(
    connection: ConnectionSettings,
    wanted: dict[str, Any],
    only: set[str] | None,
    rolling: int | None,
    deadline_s: float,
    probe: bool,
    wait: bool,
    dry_run: bool,
    issued_by: str,
    kit: Any = None,
) -> int:
    from provisioning.desired import changes
    from provisioning.rollout import FleetLink, roll_out, wait_converged

    unknown = sorted((only or set()) - set(wanted))
    if unknown:
        click.echo(f"the fleet file gives no agents to: {', '.join(unknown)}", err=True)
        return 2
    link = await FleetLink(connection).open()
    try:
        if (
            kit is not None
            and kit.url is None
            and not any(kit.sha256 in {model.sha256 for model in beacon.models} for beacon in link.beacons.values())
        ):
            click.echo(
                f"no node holds {kit.name} yet and no --model-source serves it: serve its folder with "
                "`edge-agent models serve DIR` and name that server with --model-source",
                err=True,
            )
            return 2
        found = changes(wanted, link.desired, issued_by, only=only, kit=kit)
        if not found:
            click.echo("nothing to change: every node's desired state matches the fleet file")
            return 0
        for change in found:
            before = f"generation {change.previous.generation}" if change.previous else "its config file"
            kit_change = _kit_change(change)
            click.echo(f"{change.node_id}: {before} -> generation {change.new.generation}{kit_change}")
        if dry_run:
            return 0
        if rolling is not None:
            result = await roll_out(
                link, found, rolling, deadline_s, issued_by, connection if probe else None, log=click.echo
            )
            if not result.ok:
                click.echo(f"rollout stopped: {result.why}", err=True)
                return 1
            click.echo(f"rolled out to {len(result.applied)} node(s)")
            return 0
        for change in found:
            await link.publish_desired(change.node_id, change.new)
        if not wait:
            return 0
        failures = [
            why for why in await asyncio.gather(*(wait_converged(link, c.new, deadline_s) for c in found)) if why
        ]
        for why in failures:
            click.echo(why, err=True)
        click.echo(f"{len(found) - len(failures)} of {len(found)} node(s) converged")
        return 1 if failures else 0
    finally:
        await link.close()


def _kit_change(change: Any) -> str:
    from provisioning.desired import kit_version

    before = kit_version(change.previous.kit if change.previous else None)
    after = kit_version(change.new.kit)
    return f" (kit {before or 'as installed'} -> {after})" if after != before else ""


@fleet.command()
@fabric_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per node.")
@click.option("--settle", "settle_s", type=float, default=1.5, show_default=True, help="Seconds to gather beacons.")
def status(
    config_path: Path | None, brokers: tuple[str, ...], fabric: str | None, as_json: bool, settle_s: float
) -> None:
    """Desired against reported state per node: converged or not, and why."""
    config = fabric_config(config_path, brokers, fabric)
    rows = run_async(_status(config.connection, settle_s))
    if as_json:
        for row in rows:
            click.echo(json.dumps(row.__dict__))
    else:
        click.echo(_table(rows))
    sys.exit(0 if all(row.converged for row in rows) else 1)


async def _status(connection: ConnectionSettings, settle_s: float) -> list[Any]:
    from provisioning.rollout import FleetLink

    link = await FleetLink(connection).open(settle_s)
    try:
        return [link.convergence(node_id) for node_id in sorted(set(link.desired) | set(link.beacons))]
    finally:
        await link.close()


def _table(rows: list[Any]) -> str:
    header = ("NODE", "DESIRED", "REPORTED", "KIT", "STATUS", "CONVERGED", "WHY")
    lines = [header] + [
        (
            row.node_id,
            str(row.desired),
            "-" if row.reported is None else str(row.reported),
            _kit_cell(row.kit_reported, row.kit_desired),
            row.status,
            "yes" if row.converged else "no",
            row.why,
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False)) + "  " + line[-1] for line in lines
    )


def _kit_cell(reported: str, desired: str) -> str:
    """The kit a node runs, and the one it should run when they differ."""
    if not desired or desired == reported:
        return reported or "-"
    return f"{reported or '-'} -> {desired}"


@click.command()
@click.argument("node_id")
@fabric_options
@click.option("--reason", default="", help="Why (shown in logs).")
@click.option("--wait", "wait_s", type=float, default=30.0, show_default=True, help="Seconds to wait for `draining`.")
def drain(
    node_id: str, config_path: Path | None, brokers: tuple[str, ...], fabric: str | None, reason: str, wait_s: float
) -> None:
    """Take NODE out of routing: routers send it no new runs, its runs in flight finish."""
    config = fabric_config(config_path, brokers, fabric)
    ok = run_async(_order(config.connection, node_id, True, reason, wait_s))
    click.echo(f"{node_id} is draining" if ok else f"ordered {node_id} to drain; its beacon does not show it yet")
    sys.exit(0 if ok else 1)


@click.command()
@click.argument("node_id")
@fabric_options
@click.option("--wait", "wait_s", type=float, default=30.0, show_default=True, help="Seconds to wait for `online`.")
def undrain(
    node_id: str, config_path: Path | None, brokers: tuple[str, ...], fabric: str | None, wait_s: float
) -> None:
    """Put NODE back into routing (clears the drain order)."""
    config = fabric_config(config_path, brokers, fabric)
    ok = run_async(_order(config.connection, node_id, False, "", wait_s))
    click.echo(
        f"{node_id} is serving" if ok else f"cleared the drain order of {node_id}; its beacon does not show it yet"
    )
    sys.exit(0 if ok else 1)


async def _order(connection: ConnectionSettings, node_id: str, drain: bool, reason: str, wait_s: float) -> bool:
    from provisioning.rollout import FleetLink

    link = await FleetLink(connection).open(settle_s=0.2)
    try:
        await link.set_drain(node_id, drain, reason)

        def shows() -> bool:
            beacon = link.beacons.get(node_id)
            return beacon is not None and beacon.drain_requested == drain

        return await link.wait_until(shows, wait_s)
    finally:
        await link.close()
