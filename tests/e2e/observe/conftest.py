"""A small echo fleet for the observability commands: agents and a router as `edge-agent` processes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import REPO, RunningBroker

START_S = 60.0


@dataclass
class Fleet:
    """Processes started by a test, stopped in reverse order; logs go to files for diagnostics."""

    broker: RunningBroker
    fabric: str
    env: dict[str, str]
    directory: Path
    processes: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def cli(self, *arguments: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "edge_agent.cli", *arguments]
        return subprocess.run(command, env=self.env, cwd=REPO, capture_output=True, text=True, timeout=timeout)

    def spawn(self, name: str, *arguments: str, ready: str) -> None:
        log = self.directory / f"{name}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "edge_agent.cli", *arguments], env=self.env, cwd=REPO, stdout=sink, stderr=sink
            )
        self.processes.append((process, log))
        deadline = time.monotonic() + START_S
        while ready not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{name} did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)

    def agent(self, node_id: str, preset: str = "math") -> None:
        common = ("--broker", self.broker.url, "--fabric", self.fabric)
        arguments = ("start", *common, "--node-id", node_id, "--backend", "echo", "--preset", preset)
        self.spawn(node_id, *arguments, ready=f"node {node_id} online")

    def router(self, router_id: str = "router-1") -> None:
        arguments = ("router", "--broker", self.broker.url, "--fabric", self.fabric, "--router-id", router_id)
        self.spawn(router_id, *arguments, ready=f"router {router_id} serving")

    def stop(self) -> None:
        for process, _ in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
def fleet(
    mosquitto_broker: RunningBroker, fabric: str, subprocess_env: dict[str, str], tmp_path: Path
) -> Iterator[Fleet]:
    running = Fleet(mosquitto_broker, fabric, subprocess_env, tmp_path)
    yield running
    running.stop()
