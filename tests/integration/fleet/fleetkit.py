"""Helpers of the fleet-operation tests: node, router and CLI processes on a real broker, and a fabric watcher."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from support import REPO, stop_processes

from shared.config import ConnectionSettings
from shared.errors import MessageError
from shared.messages import NodeBeacon, NodeState, RunRequest, decode
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

START_S = 90.0  # processes start slowly on a busy 2-core machine


class Processes:
    """`python -m edge_agent.cli ...` processes, each logging to a file; all stopped at the end."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory, self.env = directory, env
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, *arguments: str, own_state: bool = False) -> subprocess.Popen[bytes]:
        """Start a command; `own_state`: its config file's state_dir holds (no shared state-dir override)."""
        log = self.directory / f"{name}.log"
        env = {k: v for k, v in self.env.items() if k != "SYMPHONY_EDGE_STATE_DIR"} if own_state else self.env
        process = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.cli", *arguments],
            cwd=REPO,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        self.started.append((process, log))
        return process

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for _, log in self.started if log.exists())

    def stop(self) -> None:
        stop_processes([process for process, _ in self.started])


def cli(env: dict[str, str], *arguments: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run an `edge-agent` command to its end."""
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", *arguments],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_node_config(path: Path, node_id: str, connection: ConnectionSettings, **settings: Any) -> Path:
    data: dict[str, Any] = {
        "node_id": node_id,
        "connection": {"fabric": connection.fabric, "brokers": list(connection.brokers), "keepalive_s": 2},
        "state_interval_s": 0.5,
        **settings,
    }
    path.write_text(yaml.safe_dump(data))
    return path


class FabricWatch:
    """Beacons, states and run requests of a fabric as a test sees them (an anonymous loopback observer)."""

    def __init__(self, connection: ConnectionSettings) -> None:
        self.topics = Topics(connection.fabric)
        self.client = FabricClient(connection, unique_client_id("watch"))
        self.beacons: dict[str, NodeBeacon] = {}
        self.states: dict[str, NodeState] = {}
        self.runs: list[tuple[float, RunRequest]] = []
        self._changed = asyncio.Event()

    async def open(self) -> FabricWatch:
        await self.client.subscribe(self.topics.beacons(), self._on_beacon)
        await self.client.subscribe(self.topics.states(), self._on_state)
        await self.client.subscribe(f"{self.topics.prefix}/agent/+/run", self._on_run)
        await self.client.connect(timeout=15)
        return self

    async def close(self) -> None:
        await self.client.close()

    def _on_beacon(self, topic: str, payload: bytes) -> None:
        if payload:
            beacon: NodeBeacon = decode(payload, NodeBeacon)
            self.beacons[beacon.node_id] = beacon
            self._changed.set()

    def _on_state(self, topic: str, payload: bytes) -> None:
        state: NodeState = decode(payload, NodeState)
        self.states[state.node_id] = state
        self._changed.set()

    def _on_run(self, topic: str, payload: bytes) -> None:
        try:
            message = decode(payload)
        except MessageError:
            return
        if isinstance(message, RunRequest):
            self.runs.append((time.monotonic(), message))

    async def until(self, condition: Callable[[], bool], timeout: float = START_S, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what or condition}")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))

    def in_flight(self, node_id: str) -> int:
        state = self.states.get(node_id)
        return sum(agent.in_flight + agent.queue_length for agent in state.agents) if state else 0

    def runs_to(self, agent_ids: set[str], after: float) -> int:
        return sum(1 for at, run in self.runs if at > after and run.agent_id in agent_ids)
