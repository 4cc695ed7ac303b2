"""The module-scoped gateway fabric fixture (see e2e.gateway.fleet)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest
from e2e.gateway.fleet import ECHO_AGENTS, LLAMA_AGENT, SLOW_AGENT, START_S, GatewayFabric, echo
from support import RunningBroker, amqtt_command, stop_processes

from broker.policy import free_port


@pytest.fixture(scope="module")
def gateway_fabric(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayFabric]:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    directory = tmp_path_factory.mktemp("gateway-fabric")
    port = free_port()
    broker = RunningBroker("amqtt", port, amqtt_command(port))
    broker.start()
    env = dict(os.environ, SYMPHONY_EDGE_STATE_DIR=str(directory / "state"), PYTHONUNBUFFERED="1")
    fleet = GatewayFabric(broker, f"gw-{uuid.uuid4().hex[:8]}", directory, env)
    try:
        fleet.node("echoes", [echo(agent_id) for agent_id in ECHO_AGENTS] + [echo(SLOW_AGENT, delay_s=30.0)])
        llama = {"agent_id": LLAMA_AGENT, "preset": "writer", "backend": "llamacpp", "model": "default", "threads": 1}
        fleet.node("board", [{**llama, "context_length": 1024, "temperature": 0.0}])
        fleet.spawn("router", "router", "--broker", broker.url, "--fabric", fleet.fabric, "--router-id", "r1")
        gateway_port = free_port()
        fleet.gateway_url = f"http://127.0.0.1:{gateway_port}"
        fleet.spawn("gateway", "gateway", "--broker", broker.url, "--fabric", fleet.fabric, "--port", str(gateway_port))
        deadline = time.monotonic() + START_S
        while True:
            try:
                health = fleet.health()
                if health["agents"] == len(ECHO_AGENTS) + 2 and health["routers"] == 1:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in fleet.processes.values()):
                pytest.fail(f"the fabric did not come up:\n{fleet.logs()}")
            time.sleep(0.2)
        yield fleet
    finally:
        stop_processes(reversed(list(fleet.processes.values())))
        broker.stop()
