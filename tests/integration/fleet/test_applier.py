"""The node's desired-state applier on a real broker (in process): a newer desired state supersedes a download in
progress, and a board without room for two models unloads the old one first and loads it again if the new fails."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

from support import RunningBroker, connection_for

from edge_agent.runtime.assembly import build_workers
from edge_agent.runtime.desired import DesiredStateApplier
from edge_agent.runtime.node import EdgeNode, NodeSettings
from edge_agent.runtime.worker import AgentWorker
from model_store.holdings import ModelHoldings, sha256_file
from provisioning.rollout import FleetLink
from shared.config import AgentConfig, NodeConfig
from shared.messages import DesiredAgent, DesiredState, ModelRef


async def started_node(
    broker: RunningBroker, fabric: str, tmp_path: Path, memory: int, fail_for: str = ""
) -> tuple[EdgeNode, DesiredStateApplier, list[list[str]]]:
    connection = connection_for(broker, fabric)
    own = (AgentConfig(agent_id="n1-math", preset="math", backend="echo"),)
    config = NodeConfig(node_id="n1", connection=connection, agents=own, state_dir=tmp_path)
    built: list[list[str]] = []

    async def build(agents: Sequence[AgentConfig]) -> list[AgentWorker]:
        built.append([agent.model for agent in agents])
        if fail_for and any(fail_for in agent.model for agent in agents):
            raise RuntimeError("this model does not load")
        return await build_workers(config.model_copy(update={"agents": tuple(agents)}), warm_up=False)

    settings = NodeSettings("n1", connection, tmp_path, state_interval_s=0.5, duplicate_wait_s=0.1)
    node = EdgeNode(settings, await build(own))
    holdings = ModelHoldings(tmp_path / "models")
    holdings.refresh()
    applier = DesiredStateApplier(node, own, holdings, build, tmp_path, memory=memory, fetch_deadline_s=600)
    node.before_connect.append(applier.attach)
    await node.start()
    applier.start()
    return node, applier, built


async def until(condition: object, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def test_a_newer_desired_state_supersedes_a_download_in_progress(
    amqtt_broker: RunningBroker, fabric: str, tmp_path: Path
) -> None:
    async def scenario() -> None:
        node, applier, _ = await started_node(amqtt_broker, fabric, tmp_path, memory=1 << 40)
        link = await FleetLink(connection_for(amqtt_broker, fabric)).open(settle_s=0.2)
        nowhere = ModelRef(name="nobody-has-it.gguf", sha256="e" * 64, size_bytes=1000)
        stuck = DesiredAgent(agent_id="n1-math", backend="llamacpp", model=nowhere)
        await link.publish_desired("n1", DesiredState(node_id="n1", generation=1, agents=(stuck,)))
        await until(lambda: node.report.desired_generation == 1)
        echo = DesiredAgent(agent_id="n1-math", preset="math", backend="echo", model_name="echo-v3")
        await link.publish_desired("n1", DesiredState(node_id="n1", generation=2, agents=(echo,)))
        await until(lambda: node.report.generation == 2, timeout=15)  # not after the 600 s fetch deadline
        assert [worker.info().model for worker in node.workers.values()] == ["echo-v3"]
        await link.close()
        await applier.stop()
        await node.stop()

    asyncio.run(asyncio.wait_for(scenario(), 90))


def test_without_room_for_two_models_the_old_is_unloaded_first_and_restored_on_failure(
    amqtt_broker: RunningBroker, fabric: str, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for name in ("current.gguf", "good.gguf", "broken.gguf"):
        (models / name).write_bytes(b"GGUF" + os.urandom(600_000))

    def reference(name: str) -> ModelRef:
        path = models / name
        return ModelRef(name=name, sha256=sha256_file(path), size_bytes=path.stat().st_size)

    async def scenario() -> None:
        # Memory for one 600 kB model and a half (80 % of 1.1 MB): never two at once.
        node, applier, built = await started_node(amqtt_broker, fabric, tmp_path, memory=1_100_000, fail_for="broken")
        link = await FleetLink(connection_for(amqtt_broker, fabric)).open(settle_s=0.2)

        def echo_with(name: str) -> DesiredAgent:
            return DesiredAgent(agent_id="n1-math", preset="math", backend="echo", model=reference(name))

        await link.publish_desired("n1", DesiredState(node_id="n1", generation=1, agents=(echo_with("current.gguf"),)))
        await until(lambda: node.report.generation == 1)
        built.clear()
        await link.publish_desired("n1", DesiredState(node_id="n1", generation=2, agents=(echo_with("broken.gguf"),)))
        await until(lambda: "did not start" in node.report.desired_error)
        await until(lambda: len(node.workers) == 1)
        assert node.report.generation == 1
        (worker,) = node.workers.values()
        assert worker.info().model.endswith("current.gguf")  # loaded again after the new one failed
        assert [Path(model).name for (model,) in built] == ["broken.gguf", "current.gguf"]
        await link.publish_desired("n1", DesiredState(node_id="n1", generation=3, agents=(echo_with("good.gguf"),)))
        await until(lambda: node.report.generation == 3)
        assert next(iter(node.workers.values())).info().model.endswith("good.gguf")
        assert node.status == "online"
        await link.close()
        await applier.stop()
        await node.stop()

    asyncio.run(asyncio.wait_for(scenario(), 90))
