"""The fleet's processes: a broker, one `edge-agent start` per scripted agent, one `edge-agent router`.

Each runs as an operator would run it (`python -m edge_agent.cli ...`), logs to `<out>/logs/<name>.log`, and
is stopped with SIGTERM (SIGKILL after a grace period); `kill` sends SIGKILL at once, as a board that loses
power. mosquitto is used when it is on PATH, else the embedded amqtt broker (`edge-agent broker`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from broker.policy import free_port, wait_for_port

BROKER_WAIT_S = 15.0


class FleetProcesses:
    """Start, kill and stop the fleet's processes; every wait is bounded."""

    def __init__(self, directory: Path, fabric: str) -> None:
        self.directory = directory
        self.fabric = fabric
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.port = 0
        self.broker_kind = ""

    @property
    def broker_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _spawn(self, name: str, arguments: list[str]) -> subprocess.Popen[bytes]:
        logs = self.directory / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "edge_agent.cli", *arguments],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.processes[name] = process
        return process

    def start_broker(self) -> str:
        """Start the broker on a free loopback port and wait until it accepts connections."""
        self.port = free_port()
        self.broker_kind = "mosquitto" if shutil.which("mosquitto") else "amqtt"
        extra = ["--mosquitto"] if self.broker_kind == "mosquitto" else []
        process = self._spawn("broker", ["broker", "--port", str(self.port), *extra])
        try:
            wait_for_port(self.port, BROKER_WAIT_S, process)
        except (RuntimeError, TimeoutError) as error:
            raise RuntimeError(f"{error}; broker log: {self.log_tail('broker')}") from None
        return self.broker_url

    def start_agent(self, name: str, config_file: Path) -> None:
        self._spawn(name, ["start", "-c", str(config_file), "--broker", self.broker_url, "--fabric", self.fabric])

    def start_router(self, router_id: str, config_file: Path, state_file: Path, seed: int) -> None:
        arguments = ["router", "-c", str(config_file), "--broker", self.broker_url, "--fabric", self.fabric]
        arguments += ["--router-id", router_id, "--state-file", str(state_file), "--seed", str(seed)]
        self._spawn(router_id, arguments)

    def kill(self, name: str) -> None:
        """SIGKILL one process (no clean shutdown: the broker publishes its Will)."""
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)

    def stop_one(self, name: str, timeout_s: float = 10.0) -> None:
        """SIGTERM one process (a clean shutdown: a router saves its state) and wait for it."""
        process = self.processes[name]
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def check_alive(self, names: list[str]) -> None:
        """Raise with the log tail when one of `names` has exited."""
        for name in names:
            process = self.processes[name]
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}: {self.log_tail(name)}")

    def log_tail(self, name: str, characters: int = 2000) -> str:
        path = self.directory / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-characters:] if path.exists() else ""

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the router and agents, then the broker (so they disconnect cleanly); SIGKILL stragglers."""
        clients = [process for name, process in self.processes.items() if name != "broker"]
        broker = [self.processes["broker"]] if "broker" in self.processes else []
        for group in (clients, broker):
            for process in group:
                if process.poll() is None:
                    process.terminate()
            for process in group:
                try:
                    process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
