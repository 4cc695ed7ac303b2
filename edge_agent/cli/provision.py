"""`edge-agent provision`: render fleet configs and credentials from an inventory, then run Ansible."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from shared.errors import ConfigError

inventory_option = click.option(
    "-i", "--inventory", type=click.Path(path_type=Path), help="Ansible inventory (INI or YAML)."
)
fleet_option = click.option(
    "--fleet", type=click.Path(path_type=Path), help="Fleet file (default: fleet.yml next to the inventory)."
)
output_option = click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Rendered files (default: rendered/ next to the inventory)."
)


@click.group(invoke_without_command=True)
@inventory_option
@fleet_option
@output_option
@click.option("--check", is_flag=True, help="Dry run: ansible-playbook --check --diff.")
@click.option("--limit", help="Only these inventory hosts or groups (ansible --limit).")
@click.option("--playbook", type=click.Path(path_type=Path), help="Playbook (default: the kit's ansible/site.yml).")
@click.option("-e", "--extra-vars", multiple=True, help="Extra Ansible variable, key=value (repeatable).")
@click.option(
    "--artifacts",
    type=click.Path(path_type=Path),
    help="Artifact cache (default ~/.cache/symphony-edge/artifacts or $SYMPHONY_EDGE_ARTIFACTS).",
)
@click.option(
    "--find-links",
    type=click.Path(path_type=Path),
    multiple=True,
    help="Folder with prebuilt wheels (llama-cpp-python) to reuse (repeatable).",
)
@click.option(
    "--no-build-llama",
    is_flag=True,
    help="Never build llama-cpp-python, here or on a first board (boards without a wheel build it from source).",
)
@click.option(
    "--build-llama-on-boards",
    is_flag=True,
    help="Build each missing llama-cpp-python wheel on the first board of its kind, even a kind this machine could "
    "build (by default only the kinds it cannot: another platform or Python, or CUDA).",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    help="After Ansible, wait for every node's beacon and every router's presence (needs an operator account).",
)
@click.option("--wait-timeout", type=float, default=180.0, show_default=True, help="Seconds to wait for the fleet.")
@click.pass_context
def provision(
    context: click.Context,
    inventory: Path | None,
    fleet: Path | None,
    output: Path | None,
    check: bool,
    limit: str | None,
    playbook: Path | None,
    extra_vars: tuple[str, ...],
    artifacts: Path | None,
    find_links: tuple[Path, ...],
    no_build_llama: bool,
    build_llama_on_boards: bool,
    wait: bool,
    wait_timeout: float,
) -> None:
    """Render every node's config, credentials, ACLs (and certificates), then run ansible/site.yml.

    The control node builds the kit's wheel, a wheelhouse per kind of board, one llama-cpp-python wheel per kind
    and fetches each model once (the artifact cache); the boards install from the copied files, offline. A kind
    this machine cannot build llama-cpp-python for (another platform or Python, CUDA) gets its wheel built on its
    first board first (ansible/build-llama.yml) and fetched back into the cache.
    `-e edge_agent_package_spec=<requirement or git URL>` installs the kit from an index instead.
    `edge-agent provision render` only renders. Secrets are kept across renders and never printed.
    """
    context.obj = {"inventory": inventory, "fleet": fleet, "output": output}
    if context.invoked_subcommand is not None:
        return
    paths = _paths(inventory, fleet, output)
    _render(*paths)
    from provisioning.playbook import DEFAULT_PLAYBOOK, playbook_command, run_playbook

    try:
        llama = "none" if no_build_llama else "boards" if build_llama_on_boards else "auto"
        shipped = _prepare_artifacts(*paths, artifacts, find_links, llama, extra_vars, check)
        command = playbook_command(
            paths[0], paths[2], playbook or DEFAULT_PLAYBOOK, check, limit, extra_vars, vars_files=[shipped]
        )
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    code = run_playbook(command)
    started = "symphony_start_services=false" not in [variable.replace(" ", "").lower() for variable in extra_vars]
    if code == 0 and wait and not check and started:
        code = _wait_for_fleet(*paths, limit, extra_vars, wait_timeout)
    sys.exit(code)


def _wait_for_fleet(
    inventory: Path, fleet: Path, output: Path, limit: str | None, extra_vars: tuple[str, ...], timeout_s: float
) -> int:
    """Wait for the nodes and routers to announce themselves; name the missing ones with their unit's last logs."""
    import asyncio
    import subprocess

    from provisioning.arrival import expected, unit_log_command, wait_for_fleet
    from provisioning.fleet import expand, load_fleet
    from provisioning.inventory import load_inventory
    from provisioning.plan import plan_fleet
    from provisioning.playbook import find_ansible
    from shared.config import load_node_config

    loaded = load_inventory(inventory)
    plan = plan_fleet(load_fleet(fleet), loaded)
    operators = sorted((output / "operators").glob("*.yaml"))
    if not operators:
        click.echo("no operator account in the fleet file (operators: [...]): not waiting for the nodes' beacons")
        return 0
    wanted = expected(plan)
    if limit:
        hosts = set(expand(loaded, tuple(limit.replace(":", ",").split(","))))
        wanted = type(wanted)(
            tuple(n for n in wanted.nodes if n in hosts), tuple(r for r in wanted.routers if r in hosts)
        )
    connection = load_node_config(operators[0], environment=False).connection
    click.echo(f"waiting up to {timeout_s:g} s for {len(wanted.nodes)} node(s) and {len(wanted.routers)} router(s)")
    absent = asyncio.run(wait_for_fleet(connection, wanted, timeout_s))
    if not absent:
        click.echo(f"the fleet is up: {len(wanted.nodes)} node(s) online, {len(wanted.routers)} router(s) present")
        return 0
    for name, why in absent.items():
        click.echo(f"NOT UP: {name}: {why}", err=True)
        host = name.removeprefix("router ")
        try:
            command = unit_log_command(find_ansible(), str(inventory), host, extra_vars)
            logs = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False).stdout
        except (OSError, subprocess.SubprocessError, ConfigError) as error:
            logs = f"(could not read its unit's log: {error})"
        click.echo("\n".join(f"    {line}" for line in logs.strip().splitlines()[-16:]), err=True)
    return 1


@provision.command()
@inventory_option
@fleet_option
@output_option
@click.pass_obj
def render(obj: dict[str, Any], inventory: Path | None, fleet: Path | None, output: Path | None) -> None:
    """Render node configs, credentials, ACLs and certificates only (no Ansible)."""
    _render(*_paths(inventory or obj["inventory"], fleet or obj["fleet"], output or obj["output"]))


def _paths(inventory: Path | None, fleet: Path | None, output: Path | None) -> tuple[Path, Path, Path]:
    if inventory is None:
        raise click.UsageError("give the inventory with -i/--inventory")
    if fleet is None:
        candidates = [inventory.parent / name for name in ("fleet.yml", "fleet.yaml")]
        fleet = next((path for path in candidates if path.exists()), candidates[0])
    return inventory, fleet, output or inventory.parent / "rendered"


def _prepare_artifacts(
    inventory: Path,
    fleet: Path,
    output: Path,
    cache: Path | None,
    find_links: tuple[Path, ...],
    build_llama: str,
    extra_vars: tuple[str, ...],
    check: bool,
) -> Path:
    """Fill the artifact cache and write <output>/artifacts-vars.yml (what each host gets, with checksums).

    `build_llama`: "auto" (build missing llama-cpp-python wheels here when this machine can, else on the first
    board of the kind), "boards" (always on the first board) or "none" (boards build from source).
    """
    import yaml

    from provisioning.artifacts import artifact_variables, default_cache, prepare
    from provisioning.boardbuild import build_on_boards
    from provisioning.fleet import load_fleet
    from provisioning.inventory import load_inventory
    from provisioning.plan import plan_fleet

    loaded = load_inventory(inventory)
    plan = plan_fleet(load_fleet(fleet), loaded)
    from_index = any(variable.startswith("edge_agent_package_spec=") for variable in extra_vars)
    cache = cache or default_cache()
    # A dry run builds nothing on the boards; nor does a kit from an index (no wheelhouse ships the wheel).
    if build_llama != "none" and not check and not from_index:
        build_on_boards(
            plan,
            loaded,
            inventory,
            output,
            cache,
            find_links=find_links,
            on_boards_only=build_llama == "boards",
            extra_vars=extra_vars,
            log=click.echo,
        )
    found = prepare(
        plan,
        loaded,
        cache,
        fleet_dir=fleet.resolve().parent,
        find_links=find_links,
        ship_kit=not from_index,
        build_llama=build_llama == "auto",
        log=click.echo,
    )
    for host, shipped in found.hosts.items():
        llama = "llama-cpp-python wheel" if shipped.llama_wheel else "no llama-cpp-python wheel"
        click.echo(f"{host} ({shipped.kind.name}): {shipped.bytes_shipped / 1e6:.1f} MB to ship ({llama})")
    path = output / "artifacts-vars.yml"
    path.write_text(yaml.safe_dump(artifact_variables(found), sort_keys=False))
    path.chmod(0o600)
    return path


def _render(inventory: Path, fleet: Path, output: Path) -> None:
    from provisioning.fleet import load_fleet, plaintext_warning
    from provisioning.render import render as render_fleet

    try:
        report = render_fleet(inventory, fleet, output)
        warning = plaintext_warning(load_fleet(fleet), fleet)
    except ConfigError as error:  # a bad inventory or fleet file: say which and where, exit code 2
        raise click.UsageError(str(error)) from None
    if warning is not None:
        click.echo(warning, err=True)
    click.echo(
        f"rendered {len(report.nodes)} node(s), {len(report.clients)} client(s), {len(report.operators)} operator(s) "
        f"into {report.output}: "
        f"{len(report.changed)} file(s) changed, {len(report.unchanged)} unchanged (secrets in secrets.yaml, mode 0600)"
    )
