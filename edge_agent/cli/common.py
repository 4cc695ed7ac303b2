"""Small helpers shared by the command modules: config loading and error display."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from shared.config import ConnectionSettings, NodeConfig, load_node_config
from shared.errors import ConfigError, SymphonyError, TransportError

T = TypeVar("T")
PROBE_TIMEOUT_S = 3.0

config_option = click.option(
    "-c", "--config", "config_path", type=click.Path(path_type=Path), help="Node config file (YAML)."
)
broker_option = click.option(
    "-b", "--broker", "brokers", multiple=True, help="Broker URL (repeatable), e.g. mqtt://127.0.0.1:1883."
)
fabric_option = click.option("--fabric", default=None, help="Fabric name (topic prefix symphony/<fabric>).")


def fabric_options(command: Any) -> Any:
    """`-c/--config`, `-b/--broker` and `--fabric`: the options of every command that joins a fabric."""
    return config_option(broker_option(fabric_option(command)))


def load_config(config_path: Path | None, **overrides: Any) -> NodeConfig:
    """Load the node config, turning a bad file into a clear message and exit code 2."""
    try:
        return load_node_config(config_path, **overrides)
    except ConfigError as error:
        raise click.UsageError(str(error)) from None


def fabric_config(
    config_path: Path | None, brokers: tuple[str, ...], fabric: str | None, **overrides: Any
) -> NodeConfig:
    """`load_config` with the usual command-line overrides: `--broker` (when given) and `--fabric`."""
    settings: dict[str, Any] = {"connection.fabric": fabric, **overrides}
    if brokers:
        settings["connection.brokers"] = list(brokers)
    return load_config(config_path, **settings)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM: a long-running command stops cleanly when it is set."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    return stop


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; kit errors become a clear message and exit code 1."""
    try:
        return asyncio.run(coroutine)
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    except SymphonyError as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def check_reachable(connection: ConnectionSettings) -> None:
    """Fail at once, naming the URL and what to do, when no broker listens (instead of waiting for a timeout)."""
    refused = []
    for url in connection.broker_urls():
        try:
            with socket.create_connection((url.host, url.port), timeout=PROBE_TIMEOUT_S):
                return
        except ConnectionRefusedError:
            refused.append(str(url))
        except OSError:
            return  # unreachable or slow: let the MQTT client try and report it (it knows about failover and TLS)
    raise TransportError(
        f"nothing listens on {', '.join(refused)} (connection refused). Start a broker there with "
        "`edge-agent broker` (or `edge-agent start --host-broker`, or mosquitto), or point --broker at yours."
    )
