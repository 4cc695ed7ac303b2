"""The observe tools and task events under the rendered ACL, on both brokers, as a provisioned fleet runs them.

One fleet per broker kind (module scope): `edge-agent provision render` output, the broker on the rendered
files (the embedded amqtt broker over TLS, as a fleet without mosquitto is encrypted; mosquitto in plain TCP),
a router (`edge-agent router -c hub`) and two echo boards (`edge-agent start -c node-a|node-b`). The operator
`ops` runs status, top, trace, dashboard and doctor with `-c operators/ops.yaml`; the clients alice and bob
submit with `-c clients/<id>.yaml`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from secured import BrokerProcess, Fleet, broker_command, render_fleet, start_broker
from support import REPO

from shared.client import FabricTaskClient
from shared.messages import BidRequest, ErrorReply, RunRequest, TaskEvent, decode
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

START_S = 60.0
SETTLE_S = 0.5


@dataclass
class SecuredFleet:
    kind: str
    fleet: Fleet
    fabric: str
    env: dict[str, str]
    directory: Path
    broker: BrokerProcess | None = None
    processes: dict[str, tuple[subprocess.Popen[bytes], Path]] = field(default_factory=dict)

    @property
    def topics(self) -> Topics:
        return Topics(self.fabric)

    def file(self, account: str) -> str:
        return str(self.fleet.config_file(account))

    def cli(self, *arguments: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "edge_agent.cli", *arguments]
        return subprocess.run(command, env=self.env, cwd=REPO, capture_output=True, text=True, timeout=timeout)

    def popen(self, *arguments: str) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "edge_agent.cli", *arguments]
        return subprocess.Popen(
            command, env=self.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def spawn(self, name: str, *arguments: str, ready: str) -> None:
        log = self.directory / f"{name}.log"
        with log.open("wb") as sink:
            command = [sys.executable, "-m", "edge_agent.cli", *arguments]
            process = subprocess.Popen(command, env=self.env, cwd=REPO, stdout=sink, stderr=sink)
        self.processes[name] = (process, log)
        deadline = time.monotonic() + START_S
        while ready not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{name} did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)

    def log(self, name: str) -> str:
        return self.processes[name][1].read_text(errors="replace")

    def alive(self) -> dict[str, bool]:
        return {name: process.poll() is None for name, (process, _) in self.processes.items()}

    def stop(self) -> None:
        for process, _ in reversed(self.processes.values()):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self.broker is not None:
            self.broker.stop()


@pytest.fixture(scope="module", params=["amqtt", "mosquitto"])
def secured_fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredFleet]:
    kind = request.param
    directory = tmp_path_factory.mktemp(f"secured-{kind}")
    fabric = f"test-{uuid.uuid4().hex[:8]}"
    tls = kind == "amqtt"
    fleet = render_fleet(directory, fabric, tls=tls, kind="embedded" if kind == "amqtt" else "mosquitto")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SYMPHONY_EDGE_STATE_DIR": str(directory / "state")}
    running = SecuredFleet(kind, fleet, fabric, env, directory)
    try:
        running.broker = start_broker(broker_command(kind, fleet, "127.0.0.1", tls=tls), "127.0.0.1", fleet.port)
        state = directory / "state"
        running.spawn(
            "hub", "-v", "router", "-c", str(fleet.local_node_config("hub", state)), ready="router hub serving"
        )
        for node in ("node-a", "node-b"):
            config = str(fleet.local_node_config(node, state))
            running.spawn(node, "-v", "start", "-c", config, ready=f"node {node} online")
        yield running
    finally:
        running.stop()


def test_status_top_and_doctor_see_the_fleet_with_the_operator_account(secured_fleet: SecuredFleet) -> None:
    ops = secured_fleet.file("ops")
    status = secured_fleet.cli("status", "-c", ops)
    assert status.returncode == 0, status.stderr
    assert "nodes: 2 online, 0 offline; agents: 2" in status.stdout
    rows = {line.split()[0]: line.split() for line in status.stdout.splitlines() if line.strip()}
    assert "online" in rows["node-a"] and "online" in rows["node-b"] and rows["hub"][2] == "online"
    top = secured_fleet.cli("top", "-c", ops, "--iterations", "1", "--no-clear")
    assert top.returncode == 0, top.stderr
    assert any(line.startswith("node-a ") and "node-a-writer" in line for line in top.stdout.splitlines())
    doctor = secured_fleet.cli("doctor", "-c", ops, "--wait", "8")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert doctor.stdout.startswith(f"doctor: operator 'ops', fabric '{secured_fleet.fabric}'")
    assert "PASS  read node beacons: 2 seen: node-a, node-b" in doctor.stdout
    assert "PASS  read node states" in doctor.stdout and "PASS  read router presences: 1 seen: hub" in doctor.stdout
    if secured_fleet.kind == "amqtt":
        assert "PASS  TLS handshake" in doctor.stdout


def test_a_client_task_is_traced_for_its_client_and_the_operator_dashboard(secured_fleet: SecuredFleet) -> None:
    task_id = f"ops-{uuid.uuid4().hex[:6]}"
    ops = secured_fleet.file("ops")
    dashboard = secured_fleet.popen("dashboard", "-c", ops, "--port", "0")
    trace = secured_fleet.popen("trace", task_id, "-c", ops, "--timeout", "60")
    try:
        assert dashboard.stdout is not None and trace.stdout is not None
        url = dashboard.stdout.readline().split(" on ")[1].split()[0].rstrip("/")
        assert f"following task {task_id}" in trace.stdout.readline()
        time.sleep(1.0)  # the subscription follows the first line; events are QoS 0, not retained
        submitted = secured_fleet.cli(
            "submit", "What is 6 * 7?", "-c", secured_fleet.file("alice"), "--task-id", task_id, "--cot-count", "2"
        )
        assert submitted.returncode == 0, submitted.stderr
        assert "answer:" in submitted.stdout and "[    answered]" in submitted.stderr  # alice's own trace
        output, errors = trace.communicate(timeout=60)
        assert trace.returncode == 0, errors
        events = [line.split()[1] for line in output.splitlines() if line.lstrip().startswith("+")]
        assert events[0] == "received" and events[-1] == "answered"
        snapshot = _until(lambda: _task_of(f"{url}/snapshot", task_id), 20)
        assert snapshot is not None and snapshot["status"] == "answered"
    finally:
        for process in (dashboard, trace):
            if process.poll() is None:
                process.terminate()
            process.communicate(timeout=15)


def _task_of(url: str, task_id: str) -> dict | None:
    with urllib.request.urlopen(url, timeout=5) as response:
        tasks = json.loads(response.read())["tasks"]
    return next((task for task in tasks if task["task_id"] == task_id), None)


def _until(probe, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    return None


def test_another_client_reads_no_events_and_nobody_reads_the_gold_answer(secured_fleet: SecuredFleet) -> None:
    asyncio.run(asyncio.wait_for(_no_events_for_bob(secured_fleet), 90))


async def _no_events_for_bob(secured: SecuredFleet) -> None:
    topics = secured.topics
    fleet = secured.fleet
    spies: dict[str, list[bytes]] = {}
    clients = []
    for name, account, topic_filter in [
        ("bob-all", "bob", topics.all_task_events()),
        ("bob-alice", "bob", topics.client_task_events("alice")),
        ("ops", "ops", topics.all_task_events()),
    ]:
        client = FabricClient(fleet.connection(account), unique_client_id(name))
        received = spies.setdefault(name, [])
        await client.subscribe(topic_filter, lambda _topic, payload, into=received: into.append(payload))
        await client.connect()
        clients.append(client)
    alice_events: list[TaskEvent] = []
    try:
        async with FabricTaskClient(fleet.connection("alice")) as alice:
            answer = await alice.submit(
                "What is 6 * 7?", cot_count=2, gold_answer="GOLD-42", on_event=alice_events.append, timeout_s=60
            )
        await asyncio.sleep(SETTLE_S)
    finally:
        for client in clients:
            await client.close()
    assert answer.task_id and {event.event for event in alice_events} >= {"received", "answered"}
    operator_events = [decode(payload, TaskEvent) for payload in spies["ops"]]
    assert any(event.task_id == answer.task_id for event in operator_events)
    assert spies["bob-all"] == [] and spies["bob-alice"] == []
    assert all(b"GOLD-42" not in payload for payload in spies["ops"])
    assert all("GOLD-42" not in event.model_dump_json() for event in alice_events)


HOSTILE_REPLY_TOPICS = [
    "#",
    "+",
    "$SYS/x",
    "symphony/another-fabric/reply/alice",
    "x" * 10_000,
    "a\x00b",
]


def test_hostile_reply_topics_neither_disconnect_nor_silence_the_router_and_agents(
    secured_fleet: SecuredFleet,
) -> None:
    asyncio.run(asyncio.wait_for(_hostile_reply_topics(secured_fleet), 120))


async def _hostile_reply_topics(secured: SecuredFleet) -> None:
    topics = secured.topics
    fleet = secured.fleet
    submit = topics.client_task_submit("alice")  # alice's own submit topic: the only one her account may write
    others = [topics.beacon("node-a"), submit, topics.agent_run("node-b-writer"), topics.bid_request()]
    hostile = [*HOSTILE_REPLY_TOPICS, *others, topics.router_inbox("hub"), topics.reply("alice")]
    errors: list[ErrorReply] = []
    alice_raw = FabricClient(fleet.connection("alice"), unique_client_id("alice-raw"))
    await alice_raw.subscribe(topics.reply("alice"), lambda _t, payload: errors.append(decode(payload)))
    await alice_raw.connect()
    rogue = FabricClient(fleet.connection("hub"), unique_client_id("rogue-router"))  # a router account, misused
    await rogue.connect()
    connects_before = {name: secured.log(name).count("connected to ") for name in ("hub", "node-a")}
    try:
        for index, reply_topic in enumerate(hostile):
            request = {"kind": "task_request", "v": 1, "task_id": f"hostile-{index}", "query": "What is 1 + 1?"}
            request["reply_topic"] = reply_topic
            await alice_raw.publish_confirmed(submit, json.dumps(request).encode(), timeout=5.0)
            run = RunRequest(
                dispatch_id=f"d-{index}", task_id="t", agent_id="node-a-writer", subtask="hi", reply_topic="a/b"
            ).model_dump(mode="json")
            run["reply_topic"] = reply_topic
            await rogue.publish_confirmed(topics.agent_run("node-a-writer"), json.dumps(run).encode(), timeout=5.0)
            bid = BidRequest(request_id=f"b-{index}", task_id="t", requirement="math", reply_topic="a/b")
            bid_request = {**bid.model_dump(mode="json"), "reply_topic": reply_topic}
            await rogue.publish_confirmed(topics.bid_request(), json.dumps(bid_request).encode(), timeout=5.0)
        broken = b'{"kind": "task_request", "task_id": "broken", "reply_topic": "%s", "query": ' % (
            topics.reply("alice").encode()
        )
        await alice_raw.publish_confirmed(submit, broken, timeout=5.0)  # answered: on alice's reply topic
        await asyncio.sleep(SETTLE_S)
        async with FabricTaskClient(fleet.connection("alice")) as alice:
            answers = [await alice.submit(f"What is {n} + {n}?", cot_count=2, timeout_s=60) for n in range(3)]
    finally:
        await alice_raw.close()
        await rogue.close()
    assert len(answers) == 3 and all(answer.answer for answer in answers)
    assert secured.alive() == {"hub": True, "node-a": True, "node-b": True}
    bad_requests = [e for e in errors if isinstance(e, ErrorReply) and e.code == "bad_request"]
    assert {e.task_id for e in bad_requests} >= {"broken"}
    # Every hostile reply topic is answered on alice's own (refused, or unreadable), never published on.
    refused = {e.task_id for e in errors if isinstance(e, ErrorReply) and e.code in ("forbidden", "bad_request")}
    assert refused >= {f"hostile-{index}" for index in range(len(hostile) - 1)}  # the last one is alice's own
    hub_log, node_log = secured.log("hub"), secured.log("node-a")
    assert "Traceback" not in hub_log + node_log
    # nobody was dropped by the broker for publishing where it may not (mosquitto drops a denied QoS 1 publisher)
    assert "disconnected from" not in hub_log + node_log
    assert {name: secured.log(name).count("connected to ") for name in ("hub", "node-a")} == connects_before
    assert node_log.count("dropped run d-") >= 4 and node_log.count("dropped a bid request") >= 4
