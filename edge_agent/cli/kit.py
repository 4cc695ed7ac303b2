"""`edge-agent kit-update`: the privileged updater's command (run as root by symphony-edge-kit-update.service).

It parses options and calls `edge_agent.updater`; see that module for what it checks and the trust boundary.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edge_agent.cli.common import fabric_config, fabric_options, run_async


@click.command("kit-update")
@fabric_options
@click.option("--spool", type=click.Path(path_type=Path, file_okay=False), help="Default: <state_dir>/kit-spool.")
@click.option(
    "--keep-dir",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="A root-owned folder where the installed wheel is kept (to go back to).",
)
@click.option(
    "--fallback",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The provisioned kit wheel: what to reinstall when a new kit does not start and none is kept yet.",
)
@click.option("--start-timeout", "start_timeout_s", type=float, default=90.0, show_default=True)
def kit_update(
    config_path: Path | None,
    brokers: tuple[str, ...],
    fabric: str | None,
    spool: Path | None,
    keep_dir: Path,
    fallback: Path | None,
    start_timeout_s: float,
) -> None:
    """Install the wheel the agent placed in the spool, if it is the one the node's desired state names."""
    from edge_agent.runtime.kit import SPOOL_DIRECTORY
    from edge_agent.updater import Updater, default_python, retained_desired, run_pip

    config = fabric_config(config_path, brokers, fabric)
    updater = Updater(
        spool or config.resolved_state_dir() / SPOOL_DIRECTORY, default_python(), keep_dir, fallback, start_timeout_s
    )
    request = updater.take_request()
    if request is None:
        click.echo("no valid request in the spool: nothing to do")
        return
    desired = run_async(retained_desired(config.connection, config.node_id))
    result = updater.update(request, desired, run_pip)
    click.echo(f"installed {request.wheel.name}" if result.ok else result.error, err=not result.ok)
    sys.exit(0 if result.ok else 1)
