"""Shared fixtures: real brokers on loopback (amqtt in a subprocess, mosquitto as a process), unique fabrics."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import RunningBroker, amqtt_command, mosquitto_command

from broker.policy import free_port


@pytest.fixture
def amqtt_broker() -> Iterator[RunningBroker]:
    """The embedded amqtt broker in its own process (as `edge-agent broker` runs it)."""
    port = free_port()
    broker = RunningBroker("amqtt", port, amqtt_command(port))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def mosquitto_broker(tmp_path: Path) -> Iterator[RunningBroker]:
    """mosquitto as a process with the kit's rendered config."""
    port = free_port()
    broker = RunningBroker("mosquitto", port, mosquitto_command(tmp_path, port))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(params=["amqtt", "mosquitto"])
def any_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningBroker]:
    """Each test using this runs once per broker kind."""
    port = free_port()
    command = amqtt_command(port) if request.param == "amqtt" else mosquitto_command(tmp_path, port)
    broker = RunningBroker(request.param, port, command)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def fabric() -> str:
    """A fabric name of its own per test, so retained messages never leak between tests."""
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def subprocess_env(tmp_path: Path) -> dict[str, str]:
    """Environment for child processes: state in the test's temp dir, unbuffered output."""
    env = dict(os.environ)
    env["SYMPHONY_EDGE_STATE_DIR"] = str(tmp_path / "state")
    env["PYTHONUNBUFFERED"] = "1"
    return env
