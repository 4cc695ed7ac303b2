"""The gateway over a real broker with a scripted router: API keys become client accounts, errors keep their shape.

The test plays the router: it reads task/submit/+ as the fabric's router does and answers on the account's reply topic,
so it sees exactly which client account and options the gateway sent.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support import RunningBroker, connection_for

from fleet_gateway.server import GatewayServer
from shared.messages import AgentInfo, NodeBeacon, RouterPresence, TaskAnswer, TaskRequest, decode
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

KEY = "sk-symphony-laptop-0123456789"
BODY = {"model": "symphony", "messages": [{"role": "user", "content": "What is 6 * 7?"}]}


@dataclass
class Reply:
    status_code: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


class Http:
    """A tiny HTTP client (urllib in a thread) so the test needs nothing beyond the standard library."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return await asyncio.to_thread(self._call, "GET", path, None, headers or {})

    async def post(self, path: str, json: Any, headers: dict[str, str] | None = None) -> Reply:
        return await asyncio.to_thread(self._call, "POST", path, json, headers or {})

    def _call(self, method: str, path: str, body: Any, headers: dict[str, str]) -> Reply:
        data = None if body is None else json.dumps(body).encode()
        headers = {**headers, "Content-Type": "application/json"} if data else headers
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return Reply(response.status, response.read(), {k.lower(): v for k, v in response.headers.items()})
        except urllib.error.HTTPError as error:
            return Reply(error.code, error.read(), {k.lower(): v for k, v in error.headers.items()})


async def scenario(broker: RunningBroker, fabric: str, keys_file: Path) -> dict[str, Any]:
    connection = connection_for(broker, fabric)
    topics = Topics(fabric)
    server = GatewayServer(connection, "127.0.0.1", 0, keys_file)
    await server.start()
    router = FabricClient(connection, unique_client_id("scripted-router"))
    seen: list[TaskRequest] = []

    def on_submit(topic: str, payload: bytes) -> None:
        request = decode(payload, TaskRequest)
        seen.append(request)
        answer = TaskAnswer(task_id=request.task_id, router_id="r1", answer="42", final_text="Final answer: 42")
        router.publish(topics.reply(topics.submit_owner(topic) or "nobody"), answer)  # as the router: by account

    await router.subscribe(topics.task_submissions(), on_submit)
    await router.connect()
    found: dict[str, Any] = {}
    try:
        http = Http(server.url)
        found["no_key"] = await http.post("/v1/chat/completions", json=BODY)
        found["bad_key"] = await http.get("/v1/models", headers={"Authorization": "Bearer sk-wrong"})
        auth = {"Authorization": f"Bearer {KEY}"}
        found["no_agents"] = await http.post("/v1/chat/completions", json=BODY, headers=auth)
        agent = AgentInfo(agent_id="n1-math", backend="echo", model="echo", max_in_flight=1)
        beacon = NodeBeacon(node_id="n1", epoch=1, instance_id="i", status="online", agents=(agent,))
        presence = RouterPresence(router_id="r1", instance_id="i", epoch=1, status="online", sent_at=time.time())
        await router.publish_confirmed(topics.beacon("n1"), beacon, retain=True)
        await router.publish_confirmed(topics.router_presence("r1"), presence, retain=True)
        deadline = time.monotonic() + 10
        while (await http.get("/health")).json()["status"] != "ok" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        found["answer"] = await http.post("/v1/chat/completions", json={**BODY, "cot_count": 2}, headers=auth)
        found["models"] = await http.get("/v1/models", headers=auth)
        found["invalid"] = await http.post("/v1/chat/completions", json={"model": "symphony"}, headers=auth)
    finally:
        await router.close()
        await server.close()
    found["seen"] = seen
    return found


def test_api_keys_map_to_client_accounts_and_errors_keep_openai_shape(
    amqtt_broker: RunningBroker, fabric: str, tmp_path: Path
) -> None:
    keys_file = tmp_path / "api-keys.yaml"
    keys_file.write_text(f"keys:\n  - key: {KEY}\n    client: laptop\n")
    found = asyncio.run(asyncio.wait_for(scenario(amqtt_broker, fabric, keys_file), 60))
    assert found["no_key"].status_code == 401 and found["no_key"].headers["www-authenticate"] == "Bearer"
    assert found["no_key"].json()["error"]["type"] == "authentication_error"
    assert found["bad_key"].status_code == 401
    assert found["no_agents"].status_code == 503 and found["no_agents"].json()["error"]["code"] == "no_agents"
    assert found["answer"].status_code == 200, found["answer"].text
    assert found["answer"].json()["choices"][0]["message"]["content"] == "Final answer: 42"
    (request,) = found["seen"]
    assert (request.client_id, request.reply_topic) == ("laptop", Topics(fabric).reply("laptop"))
    assert request.options.cot_count == 2
    assert "agent:n1-math" in [model["id"] for model in found["models"].json()["data"]]
    assert found["invalid"].status_code == 400 and found["invalid"].json()["error"]["param"] == "messages"
