"""`edge-agent start` (run this board's agents) and `edge-agent decommission` (clear its retained beacon)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import click

from edge_agent.cli.common import fabric_config, fabric_options, run_async
from edge_agent.cli.main import package_version
from shared.config import AgentConfig, NodeConfig

RETAINED_WAIT_S = 0.5


@click.command()
@fabric_options
@click.option("--node-id", help="This node's id (default: the host name).")
@click.option("--preset", help="Agent persona: planner, coder, math, retriever, writer.")
@click.option("--model", help="Model: 'default' (bundled SmolLM2), a .gguf path, or an MLX directory.")
@click.option("--backend", help="auto, llamacpp, mlx, openai or echo.")
@click.option("--capability", "capabilities", multiple=True, help="Capability tag (repeatable).")
@click.option("--host-broker", is_flag=True, help="Also host the embedded broker in this process.")
@click.option("--broker-port", type=int, default=None, help="Port of the hosted broker (with --host-broker).")
@click.option("--router", "host_router", is_flag=True, help="Also host the routing and voting handlers.")
@click.option("--metrics-port", type=int, help="Serve Prometheus metrics on 127.0.0.1:PORT (extra `metrics`).")
@click.option("--gateway", "host_gateway", is_flag=True, help="Also serve the OpenAI-compatible gateway (loopback).")
@click.option("--gateway-port", type=int, default=8000, show_default=True, help="Port of the hosted gateway.")
@click.option("--home-assistant", is_flag=True, help="Publish Home Assistant MQTT discovery configs for this node.")
def start(
    config_path: Path | None,
    brokers: tuple[str, ...],
    fabric: str | None,
    node_id: str | None,
    preset: str | None,
    model: str | None,
    backend: str | None,
    capabilities: tuple[str, ...],
    host_broker: bool,
    broker_port: int | None,
    host_router: bool,
    metrics_port: int | None,
    host_gateway: bool,
    gateway_port: int,
    home_assistant: bool,
) -> None:
    """Start this node: connect, publish the retained capability beacon, serve tasks until Ctrl+C.

    Without -c, one agent is started from the quick flags. With -c, the quick flags override the file's
    connection settings and, when the file has exactly one agent, that agent's fields.
    """
    config = fabric_config(config_path, brokers, fabric, node_id=node_id, metrics_port=metrics_port)
    config = _with_quick_agent(config, preset, model, backend, capabilities)
    config = _with_hosted_broker(config, host_broker, broker_port)
    if home_assistant and config.home_assistant is None:
        from shared.config import HomeAssistantSettings

        config = config.model_copy(update={"home_assistant": HomeAssistantSettings()})
    from edge_agent.runtime.assembly import run_node

    companions = [_router_companion(config)] if host_router else []
    if host_gateway:
        companions.append(_gateway_companion(config, gateway_port))
    hosts = [_broker_host(config)] if config.broker is not None else []
    code = run_async(run_node(config, package_version(), companions, hosts))
    if code:
        sys.exit(code)  # a kit upgrade: the service manager (Restart=on-failure) starts the new kit


def _with_quick_agent(
    config: NodeConfig, preset: str | None, model: str | None, backend: str | None, capabilities: tuple[str, ...]
) -> NodeConfig:
    quick = {"preset": preset, "model": model, "backend": backend, "capabilities": capabilities or None}
    quick = {key: value for key, value in quick.items() if value is not None}
    if len(config.agents) > 1:
        if quick:
            raise click.UsageError("--preset/--model/--backend/--capability need a config with at most one agent")
        return config
    base = config.agents[0] if config.agents else AgentConfig()
    try:
        agent = AgentConfig.model_validate({**base.model_dump(exclude_unset=True), **quick})
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    return config.model_copy(update={"agents": (agent,)})


def _with_hosted_broker(config: NodeConfig, host_broker: bool, port: int | None) -> NodeConfig:
    if not host_broker:
        return config
    from shared.config import BrokerURL, EmbeddedBrokerSettings

    first = BrokerURL.parse(config.connection.brokers[0])
    settings = config.broker or EmbeddedBrokerSettings(host=first.host, port=port or first.port)
    return config.model_copy(update={"broker": settings})


def _broker_host(config: NodeConfig) -> Any:
    def open_broker() -> Any:
        from broker.embedded import EmbeddedBroker, EmbeddedBrokerConfig, TopicACL  # lazy: only where one is hosted
        from broker.limits import ConnectionLimits

        settings = config.broker
        assert settings is not None
        acl = TopicACL.load(settings.acl_file) if settings.acl_file else None
        limits = ConnectionLimits(settings.message_size_limit, settings.connect_timeout_s, settings.max_unauthenticated)
        return EmbeddedBroker(
            EmbeddedBrokerConfig(
                settings.host, settings.port, settings.password_file, acl, settings.allow_anonymous, None, limits
            )
        )

    return open_broker


def _gateway_companion(config: NodeConfig, port: int) -> Any:
    @contextlib.asynccontextmanager
    async def open_gateway() -> AsyncIterator[Any]:
        from fleet_gateway.server import hosted_gateway  # lazy: FastAPI only where a gateway runs

        async with hosted_gateway(config.connection, "127.0.0.1", port) as server:
            click.echo(f"OpenAI-compatible gateway hosted on this node: {server.url}/v1")
            yield server

    return open_gateway


def _router_companion(config: NodeConfig) -> Any:
    @contextlib.asynccontextmanager
    async def open_router() -> AsyncIterator[Any]:
        from edge_agent.cli.router import state_line
        from router.service import hosted_router  # lazy: a plain board never loads the router

        async with hosted_router(config.connection, config.router, config.resolved_state_dir()) as service:
            click.echo(f"router {service.router_id} hosted on this node; {state_line(service)}")
            yield service

    return open_router


@click.command()
@fabric_options
@click.option("--node-id", required=True, help="The node whose retained beacon to clear.")
def decommission(config_path: Path | None, brokers: tuple[str, ...], fabric: str | None, node_id: str) -> None:
    """Remove a node from the fabric for good: clear its retained beacon and Home Assistant configs."""
    config = fabric_config(config_path, brokers, fabric, node_id=node_id)
    run_async(_clear_beacon(config))
    click.echo(f"cleared the retained beacon of {node_id}")


async def _clear_beacon(config: NodeConfig) -> None:
    from shared.mqtt import FabricClient, unique_client_id
    from shared.topics import Topics

    client = FabricClient(config.connection, unique_client_id("decommission"))
    await client.connect()
    await client.publish_confirmed(Topics(config.connection.fabric).beacon(config.node_id), b"", retain=True)
    await _clear_home_assistant(client, config)
    await client.close()


async def _clear_home_assistant(client: Any, config: NodeConfig) -> None:
    """Empty the node's retained discovery configs, so Home Assistant removes the device."""
    import asyncio

    from shared.topics import HOME_ASSISTANT_PREFIX, home_assistant_config_filter

    prefix = config.home_assistant.discovery_prefix if config.home_assistant else HOME_ASSISTANT_PREFIX
    found: list[str] = []
    topic_filter = home_assistant_config_filter(config.connection.fabric, config.node_id, prefix)
    # Raw, not a typed route: only the topics of Home Assistant's configs matter here, not their JSON.
    await client.subscribe(topic_filter, lambda topic, payload: found.append(topic) if payload else None)
    await asyncio.sleep(RETAINED_WAIT_S)  # retained messages follow the SUBACK at once; this bounds the wait
    await client.unsubscribe(topic_filter)
    for topic in found:
        await client.publish_confirmed(topic, b"", retain=True)
