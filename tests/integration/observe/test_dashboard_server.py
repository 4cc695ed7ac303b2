"""The dashboard server against a real broker: snapshot JSON, the event stream and basic auth."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.error
import urllib.request
from typing import Any

from support import RunningBroker, connection_for

from fleet_observe.web import DashboardServer
from shared.http_auth import ClientAccount
from shared.messages import AgentInfo, NodeBeacon
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def first_event(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].split(";")[0] == "text/event-stream"  # FastAPI adds the charset
        line = response.readline()
        assert line.startswith(b"data: ")
        return json.loads(line[6:])


async def scenario(broker: RunningBroker, fabric: str) -> None:
    connection = connection_for(broker, fabric)
    publisher = FabricClient(connection, unique_client_id("test"))
    await publisher.connect()
    agent = AgentInfo(agent_id="n1-math", backend="echo", model="echo", max_in_flight=1)
    beacon = NodeBeacon(node_id="n1", epoch=1, instance_id="i", status="online", agents=(agent,), sent_at=time.time())
    await publisher.publish_confirmed(Topics(fabric).beacon("n1"), beacon, retain=True)
    server = DashboardServer(connection, "127.0.0.1", 0)
    await server.start()
    try:
        status, body = await asyncio.to_thread(fetch, server.url + "snapshot")
        deadline = time.monotonic() + 10
        while "n1-math" not in body.decode() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            status, body = await asyncio.to_thread(fetch, server.url + "snapshot")
        assert status == 200
        assert [agent["agent_id"] for agent in json.loads(body)["agents"]] == ["n1-math"]
        event = await asyncio.to_thread(first_event, server.url + "events")
        assert event["fabric"] == fabric and event["agents"][0]["status"] == "online"
        page_status, page = await asyncio.to_thread(fetch, server.url)
        assert page_status == 200 and b"EventSource" in page
        assert (await asyncio.to_thread(fetch, server.url + "nothing"))[0] == 404

        server.credentials = ("ops", "s3cret")  # what a non-loopback --host sets up
        assert (await asyncio.to_thread(fetch, server.url + "snapshot"))[0] == 401
        good = {"Authorization": "Basic " + base64.b64encode(b"ops:s3cret").decode()}
        assert (await asyncio.to_thread(fetch, server.url + "snapshot", good))[0] == 200
        server.api_keys = {"sk-dashboard-0123456789": ClientAccount("ops")}  # --keys-file: the gateway's API keys
        bearer = {"Authorization": "Bearer sk-dashboard-0123456789"}
        assert (await asyncio.to_thread(fetch, server.url + "snapshot", bearer))[0] == 200
    finally:
        await server.close()
        await publisher.close()


def test_dashboard_server_serves_snapshots_events_and_checks_logins(any_broker: RunningBroker, fabric: str) -> None:
    asyncio.run(asyncio.wait_for(scenario(any_broker, fabric), 60))
