"""Turn a node config into running parts: backends, agent workers, the node (and optional broker/router)."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge_agent.backends.base import Backend
from edge_agent.backends.registry import choose_backend, create_backend, default_cost_per_1k_tokens, detect_platform
from edge_agent.backends.throughput import measure_tokens_per_second
from edge_agent.personas import FINAL_ANSWER_INSTRUCTION, get_persona
from edge_agent.runtime.desired import DesiredStateApplier, KitUpgrades, applied_agents, load_applied
from edge_agent.runtime.kit import RESTART_EXIT_CODE, SPOOL_DIRECTORY, KitSpool
from edge_agent.runtime.node import EdgeNode, NodeSettings
from edge_agent.runtime.worker import AgentProfile, AgentWorker
from model_store import ModelNotFound, default_model_path, resolve_model
from model_store.holdings import ModelHoldings
from model_store.peers import open_model_server
from shared.config import AgentConfig, NodeConfig

log = logging.getLogger(__name__)
GENERALIST_PROMPT = f"You are a helpful, careful assistant. {FINAL_ANSWER_INSTRUCTION}"


def open_backend(agent: AgentConfig) -> tuple[Backend, str]:
    """Create the agent's backend; returns it with the reason for the choice (logged and put in the beacon)."""
    name, settings, reason = agent.backend, {}, f"backend {agent.backend!r} set in the config"
    if name == "auto":
        choice = choose_backend(detect_platform())
        name, settings, reason = choice.name, choice.settings(), f"auto: {choice.reason}"
    settings = {**settings, **_model_settings(name, agent), **agent.backend_settings}
    log.info("agent %s: %s", agent.agent_id, reason)
    return create_backend(name, **settings), reason


def _model_settings(name: str, agent: AgentConfig) -> dict[str, Any]:
    if name == "llamacpp":
        settings: dict[str, Any] = {"model_path": resolve_model(agent.model), "n_ctx": agent.context_length}
        if agent.threads is not None:
            settings["n_threads"] = agent.threads
        return settings
    if name == "mlx":
        return {"model_path": resolve_model(agent.model)}
    if name == "echo":
        return {"model": "echo"} if agent.model == "default" else {"model": agent.model}
    return {"model": agent.model}


def agent_profile(agent: AgentConfig, index: int, node_id: str, backend_reason: str) -> AgentProfile:
    """Merge the persona preset (if any) with the agent's own overrides."""
    persona = get_persona(agent.preset) if agent.preset else None
    capabilities = agent.capabilities if agent.capabilities is not None else (persona.capabilities if persona else ())
    system_prompt = agent.system_prompt or (persona.system_prompt if persona else GENERALIST_PROMPT)
    default_id = f"{node_id}-{agent.preset or 'agent'}-{index}" if index else f"{node_id}-{agent.preset or 'agent'}"
    return AgentProfile(
        agent_id=agent.agent_id or default_id,
        persona=agent.preset or "generalist",
        system_prompt=system_prompt,
        capabilities=tuple(capabilities),
        max_in_flight=agent.max_in_flight,
        queue_size=agent.queue_size,
        max_tokens=agent.max_tokens,
        temperature=agent.temperature,
        top_p=agent.top_p,
        backend_reason=backend_reason,
        description=agent.description,
        cost_per_1k_tokens=agent.cost_per_1k_tokens,
    )


def build_worker(agent: AgentConfig, index: int, node_id: str, warm_up: bool = True) -> AgentWorker:
    """Open the backend, measure its speed with a short warm-up, and wrap it in a worker."""
    backend, reason = open_backend(agent)
    profile = agent_profile(agent, index, node_id, reason)
    if profile.cost_per_1k_tokens is None:
        profile = replace(profile, cost_per_1k_tokens=default_cost_per_1k_tokens(backend.name))
    worker = AgentWorker(profile, backend, node_id)
    if warm_up and backend.name != "echo":
        worker.tokens_per_second = round(measure_tokens_per_second(backend, max_tokens=32), 1)
        log.info("agent %s: %.1f tokens/s on warm-up", worker.profile.agent_id, worker.tokens_per_second)
    return worker


async def build_workers(config: NodeConfig, warm_up: bool = True) -> list[AgentWorker]:
    """Load every agent's backend off the event loop (model loading takes seconds)."""
    agents = config.agents or (AgentConfig(),)
    workers = []
    for index, agent in enumerate(agents):
        workers.append(await asyncio.to_thread(build_worker, agent, index, config.node_id, warm_up))
    ids = [worker.profile.agent_id for worker in workers]
    if len(set(ids)) != len(ids):
        raise ValueError(f"agent ids must be unique on a node: {ids}")
    return workers


def node_settings(config: NodeConfig, version: str) -> NodeSettings:
    return NodeSettings(
        node_id=config.node_id,
        connection=config.connection,
        state_dir=config.resolved_state_dir(),
        state_interval_s=config.state_interval_s,
        software_version=version,
        home_assistant_prefix=config.home_assistant.discovery_prefix if config.home_assistant else None,
    )


def open_holdings(state_dir: Path) -> ModelHoldings:
    """The models this node holds: its models directory and the bundled SmolLM2 (hashed once, then cached)."""
    try:
        bundled: tuple[Path, ...] = (default_model_path(),)
    except ModelNotFound:
        bundled = ()
    holdings = ModelHoldings(state_dir / "models", bundled)
    holdings.refresh()
    return holdings


async def _fleet_node(
    config: NodeConfig, version: str, stack: AsyncExitStack, restart: Callable[[], None]
) -> tuple[EdgeNode, DesiredStateApplier]:
    """The node with the agents of its last applied desired state (else its config), following desired states."""
    state_dir = config.resolved_state_dir()
    holdings = await asyncio.to_thread(open_holdings, state_dir)
    applied = load_applied(state_dir, config.node_id)
    agents = applied_agents(applied, holdings)
    if agents is None:
        applied, agents = None, list(config.agents)

    async def build(chosen: Sequence[AgentConfig]) -> list[AgentWorker]:
        return await build_workers(config.model_copy(update={"agents": tuple(chosen)}))

    node = EdgeNode(node_settings(config, version), await build(agents))
    node.report.models = holdings.references()
    spool = KitSpool(state_dir / SPOOL_DIRECTORY)
    if spool.available:  # the updater waits for this after an upgrade
        await asyncio.to_thread(spool.mark_running, version)
    if config.model_server is not None:
        settings = config.model_server
        try:
            server = open_model_server(
                holdings, settings.host, settings.port, settings.max_uploads, settings.strict_port
            ).start()
        except OSError as error:  # a name that does not resolve, a strict port in use: agents serve on
            log.warning("not serving models to peers on %s:%s: %s", settings.host, settings.port, error)
        else:
            stack.callback(server.close)
            node.report.model_server = server.url(settings.advertise or socket.gethostname())
    applier = DesiredStateApplier(
        node,
        config.agents,
        holdings,
        build,
        state_dir,
        applied,
        drain_timeout_s=config.drain_timeout_s,
        current_agents=agents,
        kit=KitUpgrades(spool, version, restart),
    )
    node.before_connect.append(applier.attach)
    return node, applier


Companion = Callable[[], AbstractAsyncContextManager[Any]]


async def run_node(
    config: NodeConfig, version: str, companions: Sequence[Companion] = (), hosts: Sequence[Companion] = ()
) -> int:
    """Run a node until SIGINT/SIGTERM (exit code 0), or until a kit upgrade asks for a restart (RESTART_EXIT_CODE:
    the service manager starts the new kit).

    `hosts` are started before the node and stopped after it (the CLI passes the embedded broker here);
    `companions` are started after the node and stopped before it (the router, the gateway). The CLI ties
    them in, so the agent runtime never imports the broker, the router or the gateway.
    """
    stop, exit_code = asyncio.Event(), [0]

    def restart() -> None:
        exit_code[0] = RESTART_EXIT_CODE
        stop.set()

    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    async with AsyncExitStack() as stack:
        for host in hosts:
            await stack.enter_async_context(host())
        node, applier = await _fleet_node(config, version, stack, restart)
        workers = list(node.workers.values())
        await node.start()
        stack.push_async_callback(node.stop)
        applier.start()
        stack.push_async_callback(applier.stop)
        if config.metrics_port is not None:
            from edge_agent.runtime.prometheus import serve_node_metrics  # lazy: prometheus-client is optional

            metrics = serve_node_metrics(config.metrics_port, node.state)
            stack.callback(metrics.close)
            print(f"metrics of node {config.node_id} on {metrics.url}", flush=True)
        for companion in companions:
            await stack.enter_async_context(companion())
        agents = ", ".join(f"{w.profile.agent_id} ({w.backend.name}, {w.profile.persona})" for w in workers)
        print(f"node {config.node_id} online (epoch {node.epoch}) with agents: {agents}", flush=True)
        await stop.wait()
        print(f"node {config.node_id} stopping" + (" to restart into a new kit" if exit_code[0] else ""), flush=True)
    return exit_code[0]
