"""The `edge-agent` console script: one small module per command group, imported only when used.

`edge-agent start` on a board must not load the router, provisioning or benchmarks, so each command lives in
its own module and `LazyGroup` imports it when the command is invoked (or its help is asked for).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from importlib.metadata import PackageNotFoundError, version

import click

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, help line)
    "demo": ("edge_agent.cli.demo", "Run the whole system locally: broker, agents, router, one question."),
    "broker": ("edge_agent.cli.broker", "Host an MQTT broker (embedded amqtt, or mosquitto)."),
    "start": ("edge_agent.cli.start", "Start this node's agents (and optionally a broker and a router)."),
    "decommission": ("edge_agent.cli.start", "Clear a node's retained beacon from the fabric."),
    "router": ("edge_agent.cli.router", "Host the routing and voting handlers."),
    "submit": ("edge_agent.cli.submit", "Submit a question to the fabric and print the voted answer."),
    "models": ("edge_agent.cli.models", "List, locate and fetch model files."),
    "provision": ("edge_agent.cli.provision", "Render fleet configs and credentials, run Ansible."),
    "status": ("edge_agent.cli.operate", "Show the nodes, agents and routers of the fabric."),
    "top": ("edge_agent.cli.operate", "Live view of the fabric and recent tasks."),
    "doctor": ("edge_agent.cli.operate", "Check connectivity, credentials, ACLs, models and backends."),
    "trace": ("edge_agent.cli.operate", "Follow one task's events."),
    "dashboard": ("edge_agent.cli.dashboard", "Serve a small live web dashboard."),
    "gateway": ("edge_agent.cli.gateway", "Serve the OpenAI-compatible HTTP API over the fabric."),
    "bench": ("edge_agent.cli.bench", "Run benchmarks and the Symphony experiments."),
    "fleet": ("edge_agent.cli.fleet", "Publish desired states from the fleet file; show who converged."),
    "drain": ("edge_agent.cli.fleet", "Take a node out of routing (its runs in flight finish)."),
    "undrain": ("edge_agent.cli.fleet", "Put a drained node back into routing."),
    "kit-update": ("edge_agent.cli.kit", "Install the kit wheel a node's desired state names (the root updater)."),
}


def package_version() -> str:
    try:
        return version("symphony-edge")
    except PackageNotFoundError:
        return "0+unknown"


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if _module_exists(COMMANDS[name][0])]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS or not _module_exists(COMMANDS[cmd_name][0]):
            return None
        module = importlib.import_module(COMMANDS[cmd_name][0])
        command: click.Command = getattr(module, cmd_name.replace("-", "_"))
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _module_exists(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_version(), prog_name="edge-agent")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Symphony Edge: a fleet of small devices as one multi-agent LLM system over MQTT."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # amqtt warns about routine shutdown details ("messages not broadcasted"); show them only with -v.
    logging.getLogger("amqtt").setLevel(logging.ERROR if verbose == 0 else level)
    logging.getLogger("transitions").setLevel(logging.WARNING)
