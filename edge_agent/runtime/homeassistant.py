"""Home Assistant MQTT discovery (opt-in): each node shows up in Home Assistant as a device with its agents' sensors.

    <prefix>/sensor/<node object>/<agent>_<metric>/config     load (%), queue, tokens/s, latency p50 (ms)
    <prefix>/binary_sensor/<node object>/online/config        connectivity: follows the beacon (and its Will)
    <prefix>/update/<node object>/agents/config               installed vs desired generation (fleet operations)
    <prefix>/update/<node object>/kit/config                  installed vs desired kit version (`fleet apply --kit`)
    <prefix>/switch/<node object>/drain/config                drain switch: writes the node's retained drain order

The configs are retained and point at the fabric's own topics, so nothing else is published for Home Assistant:
the sensors read the node's state topic, their availability and the online sensor read its retained beacon, which
the broker replaces with the offline beacon (the Will) when the node dies. Each agent's model is an attribute.
The drain switch is the one entity that writes: Home Assistant (logged in as an operator) publishes the node's
retained `NodeControl` on `control/<node>`, exactly what `edge-agent drain` / `undrain` publish.
They are published again when Home Assistant's birth message (`<prefix>/status` = `online`) arrives, and cleared
(empty retained payloads) when the node is decommissioned.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from shared.messages import NodeBeacon, NodeControl, encode
from shared.topics import HOME_ASSISTANT_PREFIX as DEFAULT_PREFIX
from shared.topics import Topics
from shared.topics import home_assistant_node_object as node_object
from shared.topics import home_assistant_object_id as object_id
from shared.topics import home_assistant_status_topic as status_topic

MANUFACTURER = "Symphony Edge"


SENSORS: tuple[tuple[str, str, str, str | None, str | None, str], ...] = (
    # metric, name, value in the agent's state, unit, device class, icon
    ("load", "load", "(agent.load * 100) | round(0)", "%", None, "mdi:gauge"),
    ("queue", "queue", "agent.queue_length", None, None, "mdi:tray-full"),
    ("tokens_per_second", "tokens/s", "(agent.tokens_per_second or 0) | round(1)", "tok/s", None, "mdi:speedometer"),
    ("latency_p50", "latency p50", "(agent.latency_p50_ms or 0) | round(0)", "ms", "duration", "mdi:timer-outline"),
)


def discovery_configs(topics: Topics, beacon: NodeBeacon, prefix: str = DEFAULT_PREFIX) -> dict[str, dict[str, Any]]:
    """Topic → retained discovery config of a node's device, its agents' sensors and its online sensor."""
    node = node_object(topics.fabric, beacon.node_id)
    beacon_topic = topics.beacon(beacon.node_id)
    device = {
        "identifiers": [node],
        "name": f"Symphony {beacon.node_id}",
        "manufacturer": MANUFACTURER,
        "model": "edge node",
        "sw_version": beacon.software_version or None,
    }
    availability = {
        "availability_topic": beacon_topic,
        "availability_template": ALIVE_TEMPLATE,
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    origin = {"name": MANUFACTURER}
    configs: dict[str, dict[str, Any]] = {
        f"{prefix}/binary_sensor/{node}/online/config": {
            "name": "online",
            "unique_id": f"{node}_online",
            "device_class": "connectivity",
            "state_topic": beacon_topic,
            "value_template": ALIVE_TEMPLATE,
            "payload_on": "online",
            "payload_off": "offline",
            "json_attributes_topic": beacon_topic,
            "json_attributes_template": "{{ {'models': value_json.agents | map(attribute='model') | list,"
            " 'host': value_json.host, 'epoch': value_json.epoch} | tojson }}",
            "device": device,
            "origin": origin,
        }
    }
    configs.update(operation_configs(topics, beacon, prefix, device, availability, origin))
    for agent in beacon.agents:
        select = f"(value_json.agents | selectattr('agent_id', 'equalto', {json.dumps(agent.agent_id)}) | first)"
        for metric, name, value, unit, device_class, icon in SENSORS:
            unique = object_id(node, agent.agent_id, metric)
            config: dict[str, Any] = {
                "name": f"{agent.agent_id} {name}",
                "unique_id": unique,
                "state_topic": topics.state(beacon.node_id),
                "value_template": f"{{% set agent = {select} %}}{{{{ {value} }}}}",
                "state_class": "measurement",
                "icon": icon,
                "json_attributes_topic": beacon_topic,
                "json_attributes_template": f"{{% set agent = {select} %}}"
                "{{ {'model': agent.model, 'backend': agent.backend, 'persona': agent.persona} | tojson }}",
                "device": device,
                "origin": origin,
                **availability,
            }
            if unit is not None:
                config["unit_of_measurement"] = unit
            if device_class is not None:
                config["device_class"] = device_class
            configs[f"{prefix}/sensor/{node}/{object_id(agent.agent_id, metric)}/config"] = config
    return configs


ALIVE_TEMPLATE = "{{ 'offline' if value_json.status == 'offline' else 'online' }}"  # a draining node is alive
UPDATE_TEMPLATE = (
    "{{ {'installed_version': 'generation ' ~ value_json.generation,"
    " 'latest_version': 'generation ' ~ value_json.desired_generation,"
    " 'title': 'agents and models',"
    " 'release_summary': value_json.desired_error or ('software ' ~ value_json.software_version),"
    " 'in_progress': value_json.generation != value_json.desired_generation and not value_json.desired_error}"
    " | tojson }}"
)


KIT_UPDATE_TEMPLATE = (  # a beacon leaves desired_kit out while no kit is named
    "{% set wanted = value_json.desired_kit | default('') %}"
    "{{ {'installed_version': value_json.software_version,"
    " 'latest_version': wanted or value_json.software_version,"
    " 'title': 'symphony-edge',"
    " 'release_summary': value_json.desired_error if wanted and wanted != value_json.software_version else '',"
    " 'in_progress': wanted != '' and wanted != value_json.software_version and not value_json.desired_error}"
    " | tojson }}"
)


def operation_configs(
    topics: Topics,
    beacon: NodeBeacon,
    prefix: str,
    device: dict[str, Any],
    availability: dict[str, Any],
    origin: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """The `update` entities (installed vs desired generation, and kit version) and the drain `switch` of a node."""
    node = node_object(topics.fabric, beacon.node_id)
    beacon_topic = topics.beacon(beacon.node_id)
    drain_on = NodeControl(node_id=beacon.node_id, drain=True, reason="Home Assistant")
    drain_off = NodeControl(node_id=beacon.node_id, drain=False, reason="Home Assistant")
    return {
        f"{prefix}/update/{node}/agents/config": {
            "name": "agents",
            "unique_id": f"{node}_agents_update",
            "state_topic": beacon_topic,
            "value_template": UPDATE_TEMPLATE,
            "entity_category": "diagnostic",
            "device": device,
            "origin": origin,
            **availability,
        },
        f"{prefix}/update/{node}/kit/config": {
            "name": "kit",
            "unique_id": f"{node}_kit_update",
            "state_topic": beacon_topic,
            "value_template": KIT_UPDATE_TEMPLATE,
            "entity_category": "diagnostic",
            "device": device,
            "origin": origin,
            **availability,
        },
        f"{prefix}/switch/{node}/drain/config": {
            "name": "drain",
            "unique_id": f"{node}_drain",
            "icon": "mdi:pipe-valve",
            "command_topic": topics.control(beacon.node_id),
            "payload_on": encode(drain_on).decode(),
            "payload_off": encode(drain_off).decode(),
            "state_topic": beacon_topic,
            "value_template": "{{ 'ON' if value_json.drain_requested else 'OFF' }}",
            "state_on": "ON",
            "state_off": "OFF",
            "retain": True,
            "device": device,
            "origin": origin,
            **availability,
        },
    }


class HomeAssistantDiscovery:
    """Publishes a node's discovery configs (retained), again at each Home Assistant birth; clears them."""

    def __init__(self, client: Any, topics: Topics, prefix: str = DEFAULT_PREFIX) -> None:
        self.client = client
        self.topics = topics
        self.prefix = prefix
        self._beacon: NodeBeacon | None = None

    async def start(self, beacon: NodeBeacon) -> None:
        """Subscribe to Home Assistant's status (its birth) and publish the configs of `beacon` now."""
        self._beacon = beacon
        # Raw, not a typed route: Home Assistant's status is a plain `online`/`offline`, not a fabric message.
        await self.client.subscribe(status_topic(self.prefix), self._on_status)
        self.publish()

    def publish(self) -> None:
        if self._beacon is None or not self.client.is_connected:
            return
        for topic, config in discovery_configs(self.topics, self._beacon, self.prefix).items():
            self.client.publish(topic, json.dumps(config).encode(), retain=True)

    def _on_status(self, topic: str, payload: bytes) -> None:
        if payload.strip() == b"online":  # Home Assistant (re)started: it forgot non-retained state; send again
            self.publish()


def clear_messages(topics: Iterable[str]) -> list[tuple[str, bytes, bool]]:
    """The empty retained messages that remove these discovery configs from Home Assistant."""
    return [(topic, b"", True) for topic in topics]
