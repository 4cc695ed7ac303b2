"""`edge-agent drain` of a busy node, on both brokers, with real processes: its runs finish, no new run reaches it,
and the fabric keeps answering; `undrain` puts it back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.fleet.fleetkit import FabricWatch, Processes, cli, write_node_config
from support import RunningBroker, connection_for

from shared.client import FabricTaskClient

pytestmark = pytest.mark.slow


@pytest.fixture
def processes(tmp_path: Path, subprocess_env: dict[str, str]) -> Iterator[Processes]:
    started = Processes(tmp_path, subprocess_env)
    yield started
    started.stop()


def test_a_drained_node_finishes_its_runs_and_gets_no_new_ones(
    any_broker: RunningBroker, fabric: str, tmp_path: Path, processes: Processes, subprocess_env: dict[str, str]
) -> None:
    connection = connection_for(any_broker, fabric)
    slow_echo = {"backend": "echo", "preset": "math", "max_in_flight": 2, "backend_settings": {"delay_s": 0.4}}
    for node in ("busy", "spare"):
        config = write_node_config(tmp_path / f"{node}.yaml", node, connection, agents=[slow_echo])
        processes.start(node, "start", "-c", str(config))
    processes.start("router", "router", "-b", any_broker.url, "--fabric", fabric)
    answered: list[str] = []
    failures: list[str] = []

    async def load(client: FabricTaskClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                answer = await client.submit("What is 6 times 7?", cot_count=1, plan_k=1, timeout_s=60)
                answered.append(answer.subtasks[0].ballots[0].agent_id if answer.subtasks else "")
            except Exception as error:  # counted: the test fails on any
                failures.append(repr(error))

    async def scenario() -> None:
        watch = await FabricWatch(connection).open()
        await watch.until(lambda: {"busy", "spare"} <= set(watch.beacons), what="both nodes online")
        async with FabricTaskClient(connection.model_copy(update={"connect_timeout_s": 15})) as client:
            stop = asyncio.Event()
            loads = [asyncio.create_task(load(client, stop)) for _ in range(4)]
            await watch.until(lambda: watch.in_flight("busy") > 0, timeout=90, what="runs on the busy node")
            busy_agents = {agent.agent_id for agent in watch.beacons["busy"].agents}
            result = await asyncio.to_thread(
                cli, subprocess_env, "drain", "busy", "-b", any_broker.url, "--fabric", fabric, "--reason", "test"
            )
            assert result.returncode == 0, result.stdout + result.stderr
            await watch.until(lambda: watch.beacons["busy"].status == "draining", what="the draining beacon")
            errors_before = {a.agent_id: a.errors for a in watch.states["busy"].agents}
            await watch.until(lambda: watch.in_flight("busy") == 0, timeout=30, what="the busy node's runs to end")
            drained_at = time.monotonic()
            answered_at_drain = len(answered)
            await watch.until(lambda: len(answered) >= answered_at_drain + 12, timeout=120, what="12 more answers")
            new_runs = watch.runs_to(busy_agents, drained_at)
            assert {a.agent_id: a.errors for a in watch.states["busy"].agents} == errors_before  # finished, not failed
            result = await asyncio.to_thread(
                cli, subprocess_env, "undrain", "busy", "-b", any_broker.url, "--fabric", fabric
            )
            assert result.returncode == 0, result.stdout + result.stderr
            undrained_at = time.monotonic()
            await watch.until(lambda: watch.beacons["busy"].status == "online", what="the busy node back online")
            await watch.until(lambda: watch.runs_to(busy_agents, undrained_at) > 0, timeout=60, what="runs again")
            stop.set()
            await asyncio.gather(*loads)
        await watch.close()
        assert new_runs == 0, f"{new_runs} runs reached the drained node"

    try:
        asyncio.run(asyncio.wait_for(scenario(), 300))
    except BaseException:
        print(processes.logs())
        raise
    assert failures == []
    assert len(answered) >= 12
