"""Message size and connection limits as both brokers' configurations carry them (issue 19.2, 19.7)."""

from __future__ import annotations

import pytest

from broker.embedded import EmbeddedBrokerConfig, amqtt_config
from broker.limits import MQTT_TOPIC_OVERHEAD, ConnectionLimits
from broker.mosquitto import MosquittoConfig, render_config


def test_mosquitto_refuses_messages_above_the_limit_and_packets_above_limit_plus_a_topic() -> None:
    lines = render_config(MosquittoConfig(message_size_limit=2048)).splitlines()
    assert "message_size_limit 2048" in lines
    assert f"max_packet_size {2048 + MQTT_TOPIC_OVERHEAD}" in lines


def test_mosquitto_keeps_its_own_limits_when_asked() -> None:
    assert "message_size_limit" not in render_config(MosquittoConfig(message_size_limit=0))


def test_the_default_limit_is_one_mebibyte_on_both_brokers() -> None:
    assert "message_size_limit 1048576" in render_config(MosquittoConfig())
    assert EmbeddedBrokerConfig().limits.message_size_limit == 1024 * 1024


def test_the_embedded_listener_takes_its_connection_cap_from_the_limits() -> None:
    config = EmbeddedBrokerConfig(limits=ConnectionLimits(max_connections=50))
    assert amqtt_config(config)["listeners"]["default"]["max_connections"] == 50


@pytest.mark.parametrize(
    "bad",
    [{"message_size_limit": 10}, {"connect_timeout_s": 0}, {"unauthenticated_per_address": 0}],
)
def test_nonsense_limits_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ConnectionLimits(**bad)  # type: ignore[arg-type]


def test_a_broker_hosted_by_start_takes_its_limits_from_node_yaml(tmp_path) -> None:
    from edge_agent.cli.start import _broker_host
    from shared.config import load_node_config

    path = tmp_path / "node.yaml"
    path.write_text("broker: {message_size_limit: 4096, connect_timeout_s: 3, max_unauthenticated: 5}\n")
    broker = _broker_host(load_node_config(path, environment=False))()
    assert broker.config.limits == ConnectionLimits(4096, 3.0, 5)
