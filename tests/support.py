"""Test helpers: real brokers on loopback (amqtt in a subprocess, mosquitto as a process)."""

from __future__ import annotations

import contextlib
import http.server
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.mosquitto import MosquittoConfig, find_mosquitto, render_config
from shared.config import ConnectionSettings
from shared.mqtt import topic_matches

REPO = Path(__file__).resolve().parent.parent


@dataclass
class RunningBroker:
    """A broker process on loopback that a test may stop and restart."""

    kind: str
    port: int
    command: list[str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_port(self.port, process=self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


def wait_for_port(port: int, timeout: float = 15.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            error = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"broker exited with {process.returncode}: {error[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop_processes(processes: Iterable[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    """SIGTERM every process still running, then wait for each (SIGKILL after `timeout`)."""
    running = list(processes)
    for process in running:
        if process.poll() is None:
            process.terminate()
    for process in running:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def amqtt_command(port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "edge_agent.cli", "broker", "--host", "127.0.0.1", "--port", str(port), *extra]


def mosquitto_command(directory: Path, port: int, config: MosquittoConfig | None = None) -> list[str]:
    binary = find_mosquitto()
    if binary is None:
        pytest.skip("mosquitto is not installed (`apt-get install mosquitto`; .ci/run installs it)")
    settings = config or MosquittoConfig(host="127.0.0.1", port=port)
    config_file = directory / f"mosquitto-{port}.conf"
    config_file.write_text(render_config(settings))
    return [binary, "-c", str(config_file)]


def connection_for(broker: RunningBroker, fabric: str, **extra: object) -> ConnectionSettings:
    return ConnectionSettings(fabric=fabric, brokers=(broker.url,), keepalive_s=2, **extra)  # type: ignore[arg-type]


@contextlib.contextmanager
def http_server(handler: type[http.server.BaseHTTPRequestHandler] | object) -> Iterator[str]:
    """A threaded HTTP server on a free loopback port for the duration of the block; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, name="test-http-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def deliver(handlers: Mapping[str, Callable[[str, bytes], object]], topic: str, payload: bytes) -> None:
    """Hand a message to the handler of every filter that matches its topic, as `FabricClient` does (no broker):
    a component's typed routes decode it, check its kind and drop bad input before its handler runs."""
    for topic_filter, handler in handlers.items():
        if topic_matches(topic_filter, topic):
            handler(topic, payload)
