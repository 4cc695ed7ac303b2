"""The gateway on a provisioned fleet whose broker enforces the rendered passwords and ACL (mosquitto and amqtt).

`edge-agent provision render` gives each client an API key (gateway/api-keys.yaml). A request with alice's key
travels under alice's MQTT account: the router answers on reply/alice, which only alice may read, so the answer
comes back only if the gateway really used her account. The gateway watches the fabric with the router host's
account (it may read beacons, states and router presences).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from integration.gateway.test_gateway_accounts import Http
from integration.provisioning.test_enforcement import Fleet, broker_command, render_fleet, start_broker
from support import REPO, stop_processes

from fleet_gateway.server import GatewayServer
from shared.http_auth import load_keys

BODY = {"model": "symphony", "messages": [{"role": "user", "content": "Say hi."}]}


@pytest.fixture(params=["mosquitto", "amqtt"])
def fleet(request: pytest.FixtureRequest, tmp_path: Path, fabric: str) -> Iterator[Fleet]:
    """A rendered fleet, its enforcing broker, node-a's echo agent and the hub's router, as processes."""
    rendered = render_fleet(tmp_path, fabric)
    broker = start_broker(broker_command(request.param, rendered, "127.0.0.1"), "127.0.0.1", rendered.port)
    processes = []
    for host, command in (("node-a", "start"), ("hub", "router")):
        config = yaml.safe_load((rendered.out / "nodes" / host / "node.yaml").read_text())
        config["state_dir"] = str(tmp_path / "state" / host)
        config.get("router", {}).pop("state_file", None)  # the rendered one is the board's path
        local = tmp_path / f"{host}.yaml"
        local.write_text(yaml.safe_dump(config))
        log = (tmp_path / f"{host}.log").open("wb")
        command_line = [sys.executable, "-m", "edge_agent.cli", command, "-c", str(local)]
        processes.append(subprocess.Popen(command_line, cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
    yield rendered
    stop_processes(processes)
    broker.stop()


async def scenario(fleet: Fleet) -> dict[str, object]:
    keys = load_keys(fleet.out / "gateway" / "api-keys.yaml")
    alice_key = next(key for key, account in keys.items() if account.client == "alice")
    server = GatewayServer(fleet.connection("hub"), "127.0.0.1", 0, fleet.out / "gateway" / "api-keys.yaml")
    await server.start()
    http = Http(server.url)
    found: dict[str, object] = {}
    try:
        deadline = time.monotonic() + 30
        while (await http.get("/health")).json()["status"] != "ok":
            assert time.monotonic() < deadline, "the gateway never saw the agent and the router"
            await asyncio.sleep(0.1)
        found["anonymous"] = (await http.post("/v1/chat/completions", json=BODY)).status_code
        reply = await http.post("/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {alice_key}"})
        found["alice"] = (reply.status_code, reply.json())
    finally:
        await server.close()
    return found


def test_an_api_key_sends_tasks_under_its_client_account(fleet: Fleet) -> None:
    found = asyncio.run(asyncio.wait_for(scenario(fleet), 90))
    assert found["anonymous"] == 401
    status, body = found["alice"]  # type: ignore[misc]
    assert status == 200, body
    assert body["choices"][0]["message"]["content"].startswith("echo: ")
