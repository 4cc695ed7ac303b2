"""`edge-agent dashboard` in headless Chromium: the page loads, shows the live nodes and follows a task.

Chromium is driven over the DevTools protocol (websockets); a screenshot is saved in the test's tmp dir, and
copied to docs/dashboard.png when SYMPHONY_EDGE_DASHBOARD_SCREENSHOT=1.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import REPO, wait_for_port

from broker.policy import free_port

websockets_sync = pytest.importorskip("websockets.sync.client")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
LAUNCH_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WAIT_S = 60.0

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (`apt-get install -y chromium`)")


class Page:
    """One Chromium tab spoken to over its DevTools websocket."""

    def __init__(self, websocket_url: str) -> None:
        self.socket = websockets_sync.connect(websocket_url, max_size=64 * 1024 * 1024, open_timeout=30)
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            reply = json.loads(self.socket.recv(timeout=30))
            if reply.get("id") == number:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, what: str) -> Any:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"the page never showed {what}; it shows: {self.evaluate('document.body.innerText')!r}")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[int]:
    """A headless Chromium with a fresh profile; yields its DevTools port."""
    port = free_port()
    command = [
        str(CHROMIUM),
        *LAUNCH_FLAGS,
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        f"--remote-debugging-port={port}",
        "--remote-debugging-address=127.0.0.1",
        "--window-size=1400,1000",
        "about:blank",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout=WAIT_S)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def open_page(devtools_port: int, url: str) -> Page:
    request = urllib.request.Request(f"http://127.0.0.1:{devtools_port}/json/new?about:blank", method="PUT")
    target = json.loads(urllib.request.urlopen(request, timeout=30).read())
    page = Page(target["webSocketDebuggerUrl"])
    page.call("Page.enable")
    page.call("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)
    page.call("Page.navigate", url=url)
    return page


def test_the_dashboard_shows_live_nodes_and_follows_a_task(fleet: Any, chromium: int, tmp_path: Path) -> None:
    fleet.agent("board-a")
    fleet.agent("board-b", preset="coder")
    fleet.router()
    port = free_port()
    common = ("--broker", fleet.broker.url, "--fabric", fleet.fabric)
    fleet.spawn("dashboard", "dashboard", *common, "--port", str(port), ready="dashboard of fabric")
    page = open_page(chromium, f"http://127.0.0.1:{port}/")

    page.wait_for("document.title === 'Symphony Edge dashboard'", "its title")
    agents = page.wait_for(
        "(t => t.includes('board-a-math') && t.includes('board-b-coder') && t)"
        "(document.getElementById('agents').innerText)",
        "both agents",
    )
    assert "online" in agents
    page.wait_for("document.getElementById('routers').innerText.includes('router-1')", "the router")
    assert "no task seen yet" in page.evaluate("document.getElementById('tasks').innerText")

    submitted = fleet.cli("submit", "What is 17 * 3?", *common, "--task-id", "dash-task-1", "--no-trace")
    assert submitted.returncode == 0, submitted.stderr
    page.wait_for("document.getElementById('tasks').innerText.includes('answered')", "the answered task")
    events = "[...document.querySelectorAll('#timeline [data-event]')].map(e => e.dataset.event)"
    # The page renders snapshots as they stream in: wait for the one that holds the whole trace.
    timeline = page.wait_for(f"(t => t.length && t[t.length - 1] === 'answered' && t)({events})", "the whole trace")
    assert timeline[0] == "received"
    assert {"screened", "dispatched", "result", "voted", "rewarded"} <= set(timeline)
    scores = page.evaluate("document.getElementById('scores').innerText")
    assert "board-a-math" in scores and "UCB" in scores
    page.wait_for("document.getElementById('agents').innerText.includes(' ms')", "the agents' latency")

    page.screenshot(tmp_path / "dashboard.png")
    assert (tmp_path / "dashboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("SYMPHONY_EDGE_DASHBOARD_SCREENSHOT") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "dashboard.png", REPO / "docs" / "dashboard.png")
