"""Plain `mosquitto_pub` stays a client (docs/tenancy.md): on an anonymous loopback fabric a one-liner publishes on
`task/submit/<any name>` without a reply topic and `mosquitto_sub` reads the answer on `reply/<that name>`; the
legacy `task/submit` with a reply topic is still answered there. Both brokers."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import pytest
from integration.security.tenancy_scene import run, scene
from support import RunningBroker, connection_for

from shared.topics import Topics


def mosquitto_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (`apt-get install mosquitto-clients`)")
    return path


def test_a_mosquitto_pub_one_liner_is_answered_on_its_names_reply_topic(any_broker: RunningBroker, fabric: str) -> None:
    run(_one_liner(any_broker, fabric))


async def _one_liner(broker: RunningBroker, fabric: str) -> None:
    topics = Topics(fabric)
    address = ["-h", "127.0.0.1", "-p", str(broker.port), "-V", "mqttv311"]
    async with scene(None, answer="4", anonymous=connection_for(broker, fabric)):
        for name, topic, extra in (
            ("me", topics.client_task_submit("me"), {}),
            ("old", topics.task_submit(), {"reply_topic": topics.reply("old")}),  # the legacy form
        ):
            reader = subprocess.Popen(
                # (stdbuf: line-buffered, so its debug line saying it subscribed comes at once)
                ["stdbuf", "-oL", mosquitto_tool("mosquitto_sub"), *address, "-d", "-t", topics.reply(name), "-C", "1"],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert reader.stdout is not None
                while "SUBACK" not in await asyncio.to_thread(reader.stdout.readline):
                    assert reader.poll() is None, "mosquitto_sub exited before subscribing"
                request = {"kind": "task_request", "v": 1, "task_id": f"t-{name}", "query": "What is 2+2?", **extra}
                publish = [mosquitto_tool("mosquitto_pub"), *address, "-t", topic, "-q", "1", "-m", json.dumps(request)]
                await asyncio.to_thread(subprocess.run, publish, check=True, timeout=30)
                output, _ = await asyncio.to_thread(reader.communicate, timeout=60)
            finally:
                if reader.poll() is None:
                    reader.kill()
                    reader.wait()
            answer = json.loads(next(line for line in output.splitlines() if line.startswith("{")))
            assert (answer["kind"], answer["task_id"], answer["answer"]) == ("task_answer", f"t-{name}", "4")
