"""The fabric a run talks to: its own (embedded broker + one node with an agent per persona), or an existing
one (`--broker`); and the run's router, learning or frozen.

Agents come from the fabric either way; the router is always the run's own, so the selector's state file and
frozen mode are under the run's control. Do not run another router on the same fabric during a benchmark:
rendezvous hashing would hand it some of the tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.runner.config import RunConfig
from shared.config import ConnectionSettings

AGENT_WAIT_S = 30.0
TEACHER = "bench"  # the client account of a run's tasks on an anonymous fabric: its router learns from its labels


def teacher(connection: ConnectionSettings) -> str:
    """The account a run submits as (its login, else `bench`): the one its router lets teach (docs/tenancy.md)."""
    return connection.username or TEACHER


@dataclass(frozen=True)
class Fabric:
    connection: ConnectionSettings
    agents: tuple[dict[str, Any], ...]
    expected_agents: int


@contextlib.asynccontextmanager
async def open_fabric(config: RunConfig) -> AsyncIterator[Fabric]:
    """The existing fabric at `config.broker`, or an embedded one that lives as long as the context."""
    if config.broker is not None:
        yield Fabric(ConnectionSettings(fabric=config.fabric, brokers=(config.broker,)), (), 1)
        return
    async with _embedded_fabric(config) as fabric:
        yield fabric


@contextlib.asynccontextmanager
async def _embedded_fabric(config: RunConfig) -> AsyncIterator[Fabric]:
    from broker.embedded import EmbeddedBroker, EmbeddedBrokerConfig
    from edge_agent.runtime.assembly import build_workers, node_settings
    from edge_agent.runtime.node import EdgeNode
    from shared.config import AgentConfig, NodeConfig

    state_dir = Path(tempfile.mkdtemp(prefix="symphony-bench-"))
    async with EmbeddedBroker(EmbeddedBrokerConfig(port=0)) as broker:
        connection = ConnectionSettings(fabric=config.fabric, brokers=(broker.url,))
        agents = tuple(
            AgentConfig(
                agent_id=f"bench-{persona}",
                preset=persona,
                backend=config.backend,
                model=config.model,
                max_tokens=config.max_tokens,
                threads=config.threads,
            )
            for persona in config.personas
        )
        node_config = NodeConfig(node_id="bench-node", connection=connection, agents=agents, state_dir=state_dir)
        workers = await build_workers(node_config)
        node = EdgeNode(node_settings(node_config, "bench"), workers)
        await node.start()
        described = tuple(
            {
                "agent_id": worker.profile.agent_id,
                "persona": worker.profile.persona,
                "backend": worker.backend.name,
                "model": getattr(worker.backend, "model", ""),
                "tokens_per_second": worker.tokens_per_second,
            }
            for worker in workers
        )
        try:
            yield Fabric(connection, described, len(workers))
        finally:
            await node.stop()


@contextlib.asynccontextmanager
async def run_router(
    fabric: Fabric, state_file: Path, frozen: bool, router_id: str, seed: int = 0
) -> AsyncIterator[Any]:
    """A RouterService on the fabric with `state_file`, learning or frozen, once it sees the agents."""
    from router.service import RouterConfig, RouterService

    config = RouterConfig(
        router_id=router_id,
        connection=fabric.connection,
        state_file=state_file,
        save_interval_s=5.0,
        seed=seed,
        frozen=frozen,
        teachers=(teacher(fabric.connection),),  # gold answers teach it
    )
    service = RouterService(config)
    await service.start()
    try:
        await wait_for_agents(service, fabric.expected_agents)
        yield service
    finally:
        await service.stop()


async def wait_for_agents(router: Any, count: int, timeout_s: float = AGENT_WAIT_S) -> None:
    """Wait until the router sees `count` live agents (then a moment more for late beacons of a big fleet)."""
    deadline = time.monotonic() + timeout_s
    while len(router.live_agents()) < count:
        if time.monotonic() >= deadline:
            raise TimeoutError(f"the router saw {len(router.live_agents())} of {count} agents after {timeout_s:g} s")
        await asyncio.sleep(0.05)
