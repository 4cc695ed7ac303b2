"""A real fabric for the gateway tests: broker, echo agents, one llama.cpp agent (the bundled SmolLM2), a router
and the gateway, each an `edge-agent` process started the way a user starts it; one fabric per module."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from support import REPO, RunningBroker

START_S = 90.0
ECHO_AGENTS = ("echo-1", "echo-2", "echo-3")
SLOW_AGENT = "slow-1"
LLAMA_AGENT = "llama-1"


@dataclass
class GatewayFabric:
    broker: RunningBroker
    fabric: str
    directory: Path
    env: dict[str, str]
    gateway_url: str = ""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spawn(self, name: str, *arguments: str) -> None:
        with (self.directory / f"{name}.log").open("wb") as sink:
            command = [sys.executable, "-m", "edge_agent.cli", *arguments]
            self.processes[name] = subprocess.Popen(command, env=self.env, cwd=REPO, stdout=sink, stderr=sink)

    def node(self, node_id: str, agents: list[dict[str, object]]) -> None:
        path = self.directory / f"{node_id}.yaml"
        path.write_text(yaml.safe_dump({"node_id": node_id, "state_interval_s": 1.0, "agents": agents}))
        self.spawn(node_id, "start", "-c", str(path), "--broker", self.broker.url, "--fabric", self.fabric)

    def health(self) -> dict[str, object]:
        with urllib.request.urlopen(f"{self.gateway_url}/health", timeout=5) as response:
            return dict(json.loads(response.read()))

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in self.directory.glob("*.log"))


def echo(agent_id: str, delay_s: float = 0.0) -> dict[str, object]:
    settings = {"delay_s": delay_s, "answer": "42"}
    return {"agent_id": agent_id, "preset": "math", "backend": "echo", "backend_settings": settings}
