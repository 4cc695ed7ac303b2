"""The dashboard with the gateway's keys: a client key sees its own tasks only; the operator view needs the login.

Two client accounts (alice, bob) have tasks on the fabric; bob, with his own key, tries to read alice's queries
and answers and the fleet, as a bearer token, as a browser login and through the event stream. Before the client
view existed, any key opened the operator view: every client's queries and answers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from support import RunningBroker, connection_for

from fleet_observe.web import DashboardServer
from shared.http_auth import load_keys
from shared.messages import AgentInfo, NodeBeacon, TaskEvent
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

ALICE_KEY = "sk-symphony-alice-0123456789"
BOB_KEY = "sk-symphony-bob-0123456789ab"
OPERATOR = ("ops", "s3cret")


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def first_event(url: str, headers: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        line = response.readline()
        assert line.startswith(b"data: ")
        return json.loads(line[6:])  # type: ignore[no-any-return]


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def raw_get(url: str, host: str) -> int:
    address, port = url.removeprefix("http://").rstrip("/").split(":")
    with socket.create_connection((address, int(port)), timeout=10) as sock:
        sock.sendall(f"GET /snapshot HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        return int(sock.recv(4096).split(b" ")[1])


async def publish_fabric(publisher: FabricClient, topics: Topics) -> None:
    agent = AgentInfo(agent_id="n1-math", backend="echo", model="echo", max_in_flight=1)
    beacon = NodeBeacon(node_id="n1", epoch=1, instance_id="i", status="online", agents=(agent,), sent_at=time.time())
    await publisher.publish_confirmed(topics.beacon("n1"), beacon, retain=True)
    for client, task_id, query in (("alice", "task-alice", "alice's secret plan"), ("bob", "task-bob", "bob asks")):
        for name, data in (("received", {"query": query}), ("answered", {"answer": f"answer for {client}"})):
            event = TaskEvent(task_id=task_id, router_id="r1", event=name, at=time.time(), data=data)
            await publisher.publish_confirmed(topics.task_events(client, task_id), event)


async def scenario(broker: RunningBroker, fabric: str, keys_file: Path) -> dict[str, Any]:
    connection = connection_for(broker, fabric)
    topics = Topics(fabric)
    server = DashboardServer(connection, "127.0.0.1", 0, load_keys(keys_file))
    server.credentials = OPERATOR  # the dashboard's own MQTT login (an operator account on a secured fabric)
    await server.start()
    publisher = FabricClient(connection, unique_client_id("test"))
    await publisher.connect()
    found: dict[str, Any] = {}
    try:
        await publish_fabric(publisher, topics)
        operator = basic(*OPERATOR)
        deadline = time.monotonic() + 10
        while len((await asyncio.to_thread(fetch, server.url + "snapshot", operator))[1]["tasks"]) < 2:
            assert time.monotonic() < deadline, "the dashboard never saw both tasks"
            await asyncio.sleep(0.05)
        bob = {"Authorization": f"Bearer {BOB_KEY}"}
        found["operator"] = (await asyncio.to_thread(fetch, server.url + "snapshot", operator))[1]
        found["bob"] = await asyncio.to_thread(fetch, server.url + "snapshot", bob)
        found["bob_events"] = await asyncio.to_thread(first_event, server.url + "events", bob)
        found["alice_browser"] = await asyncio.to_thread(fetch, server.url + "snapshot", basic("alice", ALICE_KEY))
        found["bob_as_alice"] = await asyncio.to_thread(fetch, server.url + "snapshot", basic("alice", BOB_KEY))
        found["nobody"] = await asyncio.to_thread(fetch, server.url + "snapshot")
        found["bob_page"] = (
            await asyncio.to_thread(urllib.request.urlopen, urllib.request.Request(server.url, headers=bob))
        ).status
    finally:
        await publisher.close()
        await server.close()
    return found


def test_a_client_key_sees_only_its_own_tasks_and_the_operator_view_needs_the_login(
    any_broker: RunningBroker, fabric: str, tmp_path: Path
) -> None:
    keys_file = tmp_path / "api-keys.yaml"
    keys_file.write_text(f"keys:\n  - key: {ALICE_KEY}\n    client: alice\n  - key: {BOB_KEY}\n    client: bob\n")
    found = asyncio.run(asyncio.wait_for(scenario(any_broker, fabric, keys_file), 60))

    status, bob = found["bob"]
    assert status == 200 and [task["task_id"] for task in bob["tasks"]] == ["task-bob"]
    assert "alice" not in json.dumps(bob) and "n1-math" not in json.dumps(bob)  # no other client, no fleet
    assert (bob["view"], bob["client"]) == ("client", "bob")
    assert [task["task_id"] for task in found["bob_events"]["tasks"]] == ["task-bob"]
    assert "alice" not in json.dumps(found["bob_events"])
    assert found["bob_page"] == 200  # the page itself is the same; what it shows comes from the view

    operator = found["operator"]
    assert {task["task_id"] for task in operator["tasks"]} == {"task-alice", "task-bob"}
    assert operator["view"] == "operator" and [agent["agent_id"] for agent in operator["agents"]] == ["n1-math"]

    status, alice = found["alice_browser"]
    assert status == 200 and [task["query"] for task in alice["tasks"]] == ["alice's secret plan"]
    assert found["bob_as_alice"][0] == 401 and found["nobody"][0] == 401


async def anonymous_hosts(broker: RunningBroker, fabric: str) -> dict[str, int]:
    server = DashboardServer(connection_for(broker, fabric), "127.0.0.1", 0, allowed_hosts=frozenset({"dash.lan"}))
    await server.start()
    try:
        hosts = ("evil.example", "evil.example:8765", "localhost:8765", "127.0.0.1", "[::1]:1", "dash.lan:80")
        return {host: await asyncio.to_thread(raw_get, server.url, host) for host in hosts}
    finally:
        await server.close()


def test_an_anonymous_loopback_dashboard_refuses_a_foreign_host(amqtt_broker: RunningBroker, fabric: str) -> None:
    """DNS rebinding: a page on evil.example re-pointed at 127.0.0.1 must not read every client's queries."""
    statuses = asyncio.run(asyncio.wait_for(anonymous_hosts(amqtt_broker, fabric), 60))
    assert statuses == {
        "evil.example": 400,
        "evil.example:8765": 400,
        "localhost:8765": 200,
        "127.0.0.1": 200,
        "[::1]:1": 200,
        "dash.lan:80": 200,
    }
