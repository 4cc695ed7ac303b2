"""Home Assistant MQTT discovery over a real broker: the test subscribes as Home Assistant does.

Home Assistant subscribes to `<prefix>/#`, reads the retained configs, publishes its birth (`<prefix>/status`
= `online`) when it starts, and renders each entity's templates (Jinja2) against the topics the config names.
The fields are checked against HA's MQTT discovery schema for sensor and binary_sensor (the documented keys).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jinja2
from support import RunningBroker, connection_for

from edge_agent.backends.echo import EchoBackend
from edge_agent.runtime.node import EdgeNode, NodeSettings
from edge_agent.runtime.worker import AgentProfile, AgentWorker
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics
from shared.topics import home_assistant_config_filter as config_filter
from shared.topics import home_assistant_node_object as node_object

# From https://www.home-assistant.io/integrations/sensor.mqtt/ and binary_sensor.mqtt/ (the keys we may use).
COMMON_KEYS = {
    "name", "unique_id", "device", "origin", "icon", "availability_topic", "availability_template",
    "payload_available", "payload_not_available", "json_attributes_topic", "json_attributes_template",
    "state_topic", "value_template", "device_class", "enabled_by_default", "entity_category", "qos",
}  # fmt: skip
SCHEMA = {
    "sensor": COMMON_KEYS | {"unit_of_measurement", "state_class", "suggested_display_precision", "expire_after"},
    "binary_sensor": COMMON_KEYS | {"payload_on", "payload_off", "off_delay", "expire_after"},
    # https://www.home-assistant.io/integrations/update.mqtt/ and switch.mqtt/
    "update": COMMON_KEYS | {"latest_version_topic", "latest_version_template", "command_topic", "payload_install"},
    "switch": COMMON_KEYS | {"command_topic", "payload_on", "payload_off", "state_on", "state_off", "retain"},
}
DEVICE_KEYS = {"identifiers", "name", "manufacturer", "model", "sw_version", "hw_version", "configuration_url"}
DEVICE_CLASSES = {"sensor": {"duration"}, "binary_sensor": {"connectivity"}, "update": {"firmware"}, "switch": set()}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
TOPIC = re.compile(r"homeassistant/(sensor|binary_sensor|update|switch)/([a-zA-Z0-9_-]+)/([a-zA-Z0-9_-]+)/config")
TEMPLATES = jinja2.Environment(undefined=jinja2.StrictUndefined)


def render(template: str, payload: bytes) -> str:
    return TEMPLATES.from_string(template).render(value_json=json.loads(payload))


def node(connection: Any, tmp_path: Path) -> EdgeNode:
    profile = AgentProfile("n1-math", "math", "You echo.", ("math",), 1, 4, 64, 0.0, 1.0)
    worker = AgentWorker(profile, EchoBackend(model="SmolLM2-135M"), "n1")
    settings = NodeSettings(
        "n1", connection, tmp_path, state_interval_s=0.2, duplicate_wait_s=0.1, home_assistant_prefix="homeassistant"
    )
    return EdgeNode(settings, [worker])


class HomeAssistant:
    """Subscribes like Home Assistant: every message under the prefix, and the fabric topics the configs name."""

    def __init__(self, connection: Any) -> None:
        self.client = FabricClient(connection, unique_client_id("homeassistant"))
        self.messages: dict[str, list[bytes]] = {}

    async def start(self, topic_filter: str, *extra: str) -> None:
        for item in (topic_filter, *extra):
            await self.client.subscribe(
                item, lambda topic, payload: self.messages.setdefault(topic, []).append(payload)
            )
        await self.client.connect()

    def latest(self, topic: str) -> bytes:
        return self.messages[topic][-1]

    def configs(self) -> dict[str, dict[str, Any]]:
        return {t: json.loads(p[-1]) for t, p in self.messages.items() if t.endswith("/config") and p[-1]}


async def until(condition: Any) -> None:
    deadline = time.monotonic() + 15
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def scenario(broker: RunningBroker, fabric: str, tmp_path: Path) -> dict[str, Any]:
    connection = connection_for(broker, fabric)
    topics = Topics(fabric)
    edge = node(connection, tmp_path)
    await edge.start()
    home = HomeAssistant(connection)
    found: dict[str, Any] = {}
    try:
        await home.start(config_filter(fabric, "n1"), topics.beacon("n1"), topics.state("n1"))
        await until(lambda: len(home.configs()) == 8 and topics.state("n1") in home.messages)
        found["configs"] = home.configs()
        found["beacon"], found["state"] = home.latest(topics.beacon("n1")), home.latest(topics.state("n1"))
        before = {topic: len(home.messages[topic]) for topic in found["configs"]}
        await home.client.publish_confirmed("homeassistant/status", b"online")  # Home Assistant (re)started
        await until(lambda: all(len(home.messages[t]) > count for t, count in before.items()))
    finally:
        await edge.stop()
    await until(lambda: b'"offline"' in home.latest(topics.beacon("n1")))
    found["offline_beacon"] = home.latest(topics.beacon("n1"))
    await home.client.close()
    return found


def test_a_node_is_a_home_assistant_device_with_valid_discovery_configs(
    amqtt_broker: RunningBroker, fabric: str, tmp_path: Path
) -> None:
    found = asyncio.run(asyncio.wait_for(scenario(amqtt_broker, fabric, tmp_path), 60))
    configs: dict[str, dict[str, Any]] = found["configs"]
    node_id = node_object(fabric, "n1")
    kinds = sorted(
        (m.group(1), m.group(3)) for m in (TOPIC.fullmatch(t) for t in configs) if m and m.group(2) == node_id
    )
    assert kinds == [
        ("binary_sensor", "online"),
        ("sensor", "n1-math_latency_p50"),
        ("sensor", "n1-math_load"),
        ("sensor", "n1-math_queue"),
        ("sensor", "n1-math_tokens_per_second"),
        ("switch", "drain"),
        ("update", "agents"),
        ("update", "kit"),
    ]
    for topic, config in configs.items():
        component = topic.split("/")[1]
        assert set(config) <= SCHEMA[component], set(config) - SCHEMA[component]
        assert set(config["device"]) <= DEVICE_KEYS and config["device"]["identifiers"] == [node_id]
        assert config.get("device_class") in (None, *DEVICE_CLASSES[component])
        assert config.get("state_class", "measurement") in STATE_CLASSES
        assert config["unique_id"] and config["state_topic"].startswith(f"symphony/{fabric}/")
    assert len({config["unique_id"] for config in configs.values()}) == len(configs)

    online = configs[f"homeassistant/binary_sensor/{node_id}/online/config"]
    assert render(online["value_template"], found["beacon"]) == online["payload_on"]
    assert render(online["value_template"], found["offline_beacon"]) == online["payload_off"]  # the Will, too
    assert "SmolLM2-135M" in json.loads(render(online["json_attributes_template"], found["beacon"]))["models"]
    update = configs[f"homeassistant/update/{node_id}/agents/config"]
    versions = json.loads(render(update["value_template"], found["beacon"]))
    assert versions["installed_version"] == versions["latest_version"] == "generation 0"
    kit = configs[f"homeassistant/update/{node_id}/kit/config"]
    beacon = json.loads(found["beacon"])
    versions = json.loads(render(kit["value_template"], found["beacon"]))
    assert versions["installed_version"] == versions["latest_version"] == beacon["software_version"]
    assert versions["in_progress"] is False
    upgrading = json.dumps({**beacon, "desired_kit": "9.9.9"}).encode()  # `fleet apply --kit` of a 9.9.9 wheel
    versions = json.loads(render(kit["value_template"], upgrading))
    assert (versions["latest_version"], versions["in_progress"]) == ("9.9.9", True)
    failed = json.dumps({**beacon, "desired_kit": "9.9.9", "desired_error": "pip could not install"}).encode()
    versions = json.loads(render(kit["value_template"], failed))
    assert (versions["release_summary"], versions["in_progress"]) == ("pip could not install", False)
    drain = configs[f"homeassistant/switch/{node_id}/drain/config"]
    assert drain["command_topic"] == f"symphony/{fabric}/control/n1"  # what `edge-agent drain` writes
    assert json.loads(drain["payload_on"])["drain"] is True and json.loads(drain["payload_off"])["drain"] is False
    assert render(drain["value_template"], found["beacon"]) == drain["state_off"]
    load = configs[f"homeassistant/sensor/{node_id}/n1-math_load/config"]
    assert load["unit_of_measurement"] == "%" and float(render(load["value_template"], found["state"])) == 0.0
    assert render(load["availability_template"], found["beacon"]) == load["payload_available"]
    assert json.loads(render(load["json_attributes_template"], found["beacon"]))["model"] == "SmolLM2-135M"
    for metric in ("queue", "tokens_per_second", "latency_p50"):
        config = configs[f"homeassistant/sensor/{node_id}/n1-math_{metric}/config"]
        float(render(config["value_template"], found["state"]))  # a number Home Assistant can plot


def test_decommission_removes_the_device_from_home_assistant(
    amqtt_broker: RunningBroker, fabric: str, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    async def publish_configs() -> None:
        edge = node(connection_for(amqtt_broker, fabric), tmp_path)
        await edge.start()
        await edge.stop()

    async def retained_configs() -> list[str]:
        home = HomeAssistant(connection_for(amqtt_broker, fabric))
        await home.start(config_filter(fabric, "n1"))
        await asyncio.sleep(0.5)  # retained configs come right after the subscription
        await home.client.close()
        return list(home.configs())

    asyncio.run(asyncio.wait_for(publish_configs(), 30))
    assert len(asyncio.run(retained_configs())) == 8  # 5 sensors, the two update entities, the drain switch
    command = [sys.executable, "-m", "edge_agent.cli", "decommission", "--node-id", "n1"]
    command += ["--broker", amqtt_broker.url, "--fabric", fabric]
    done = subprocess.run(command, env=subprocess_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert asyncio.run(retained_configs()) == []
