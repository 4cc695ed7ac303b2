"""Several brokers, one fabric (issue 12.3): a hub and two site brokers, bridged as provisioning renders them.

Three mosquitto processes on loopback, each started on the config `edge-agent provision render` writes for its
host (passwords and the topic ACL on; the bridges log in to the hub with their own accounts). Site B hosts the
agents and the router; site A hosts only the client `alice`. Alice's tasks travel A -> hub -> B and the answers
B -> hub -> A. The hub is restarted under load: the client resends what went unanswered, so nothing is lost, and
the sites' bridges re-announce every node (retained beacons and presences) to the hub and from there to site A.
Then site A's broker stops: alice fails over to the hub, keeps being answered, and fails back once A returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from integration.reliability.fleet import Fleet, Watcher, bounded, drive_load, report_line
from support import RunningBroker

from broker.mosquitto import find_mosquitto
from broker.policy import free_port
from provisioning.render import render
from shared.client import FabricTaskClient
from shared.config import ConnectionSettings
from shared.errors import MessageError
from shared.messages import CapabilitySummary, SiteSummary, TaskEvent, decode
from shared.mqtt import FabricClient
from shared.topics import Topics

NODES = ("board-b1", "board-b2")
ROUTER = "board-b1"
TASKS = 60

INVENTORY = """\
[hub]
hub ansible_host=127.0.0.1 broker_port={hub}
[gateways]
gw-a ansible_host=127.0.0.1 broker_port={a}
gw-b ansible_host=127.0.0.1 broker_port={b}
[site_b]
board-b1
board-b2
"""

FLEET = """\
fabric: {fabric}
prefix: {prefix}
broker:
  hosts: [hub]
  bind: 127.0.0.1
  tls: {tls}
  sites:
    a: {{broker: gw-a, clients: [alice]}}
    b: {{broker: gw-b, members: [site_b]}}
agents:
  site_b: [{{preset: math, backend: echo, max_in_flight: 4, backend_settings: {{delay_s: 0.2}}}}]
routers: [board-b1]
clients: [alice]
"""


def render_fleet(
    directory: Path, fabric: str, tls: bool = False, inventory: str = INVENTORY, fleet_text: str = FLEET
) -> tuple[Path, dict[str, int]]:
    """Write an inventory and a fleet file, render them, and install the broker files (and with TLS the nodes'
    certificates) where the configs expect them, as Ansible does. Returns the render directory and the ports."""
    ports = {"hub": free_port(), "gw-a": free_port(), "gw-b": free_port()}
    (directory / "inventory.ini").write_text(inventory.format(hub=ports["hub"], a=ports["gw-a"], b=ports["gw-b"]))
    prefix = directory / "target"
    fleet = fleet_text.format(fabric=fabric, prefix=prefix, tls=str(tls).lower())
    (directory / "fleet.yml").write_text(fleet)
    output = directory / "rendered"
    render(directory / "inventory.ini", directory / "fleet.yml", output)
    config_dir = prefix / "etc" / "symphony-edge"
    installs = [(output / "broker" / name, config_dir / "broker" / name) for name in ("passwd", "acl")]
    if tls:
        installs += [(path, config_dir / "broker" / "tls" / path.name) for path in (output / "broker/tls").iterdir()]
        installs += [(path, config_dir / "tls" / path.name) for path in (output / "nodes/board-b1/tls").iterdir()]
    for source, target in installs:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    return output, ports


def broker_process(output: Path, host: str, port: int, directory: Path) -> RunningBroker:
    """The rendered config of `host`; three "hosts" share this machine, so each gets its own persistence dir."""
    text = (output / "broker" / "hosts" / host / "mosquitto.conf").read_text()
    persistence = directory / f"persistence-{host}"
    persistence.mkdir()
    lines = [
        f"persistence_location {persistence}/" if line.startswith("persistence_location") else line
        for line in text.splitlines()
    ]
    config = directory / f"mosquitto-{host}.conf"
    # As root, mosquitto must stay root to read the 0600 files (on a board the broker role hands them to the
    # mosquitto user instead).
    lines += ["user root"] if os.geteuid() == 0 else []
    config.write_text("\n".join(lines) + "\n")
    config.chmod(0o600)
    binary = find_mosquitto()
    assert binary is not None
    return RunningBroker("mosquitto", port, [binary, "-c", str(config)])


def settings(config_file: Path, **overrides: Any) -> ConnectionSettings:
    connection = yaml.safe_load(config_file.read_text())["connection"]
    return ConnectionSettings(**{**connection, "keepalive_s": 2, "connect_timeout_s": 15.0, **overrides})


def observer(output: Path, url: str) -> Watcher:
    """A watcher on one broker only. It logs in as the router's node (which may read beacons and presences)."""
    return Watcher(settings(output / "nodes" / ROUTER / "node.yaml", brokers=(url,)))


@pytest.mark.slow
@pytest.mark.mosquitto
def test_a_client_at_site_a_is_answered_by_agents_at_site_b_across_a_hub_restart(
    tmp_path: Path, fabric: str, subprocess_env: dict[str, str]
):
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    output, ports = render_fleet(tmp_path, fabric)
    brokers = {host: broker_process(output, host, port, tmp_path) for host, port in ports.items()}
    (tmp_path / "fleet").mkdir()
    fleet = Fleet(tmp_path / "fleet", subprocess_env, fabric, [])
    at_hub = observer(output, brokers["hub"].url)
    at_a = observer(output, brokers["gw-a"].url)

    def fleet_known(watcher: Watcher, since: float = 0.0) -> bool:
        return {*NODES, ROUTER} <= watcher.announced_since(since)

    async def scenario() -> dict[str, Any]:
        await at_hub.start()
        await at_a.start()
        try:
            for node in NODES:
                extra = ["--router"] if node == ROUTER else []
                fleet.start_node(node, output / "nodes" / node / "node.yaml", *extra)
            known = await at_a.wait_until(lambda: fleet_known(at_a), 30)
            assert known, f"site A does not see the fleet of site B: {fleet.log_text(ROUTER)[-2000:]}"
            # The router's beacon crosses from its site to the hub over a bridge: the hub may hear it a moment later.
            assert await at_hub.wait_until(lambda: fleet_known(at_hub), 30)
            alice_settings = settings(output / "clients" / "alice.yaml", fail_back_probe_s=0.5)
            async with FabricTaskClient(alice_settings) as alice:
                assert alice._mqtt.broker.port == ports["gw-a"]
                before = await drive_load(alice, 6, concurrency=6, prefix="before")
                load = asyncio.ensure_future(drive_load(alice, TASKS, concurrency=6))
                await asyncio.sleep(1.0)
                brokers["hub"].restart()
                restarted_at = time.monotonic()
                report = await load
                hub_again = await at_hub.wait_until(lambda: fleet_known(at_hub, restarted_at), 30)
                a_again = await at_a.wait_until(lambda: fleet_known(at_a, restarted_at), 30)
                brokers["gw-a"].stop()
                on_hub = await wait_for(lambda: alice._mqtt.is_connected and alice._mqtt.broker.port == ports["hub"])
                during_a_down = await drive_load(alice, 6, concurrency=6, prefix="a-down")
                brokers["gw-a"].start()
                back = await wait_for(lambda: alice._mqtt.is_connected and alice._mqtt.broker.port == ports["gw-a"])
                after = await drive_load(alice, 6, concurrency=6, prefix="after")
            return {
                "before": before,
                "report": report,
                "hub_again": hub_again,
                "a_again": a_again,
                "on_hub": on_hub,
                "during_a_down": during_a_down,
                "back": back,
                "after": after,
            }
        finally:
            await at_hub.close()
            await at_a.close()

    for broker in brokers.values():
        broker.start()
    try:
        result = bounded(scenario(), 180)
    finally:
        fleet.stop_all()
        for broker in brokers.values():
            broker.stop()
    report = result["report"]
    report_line(
        "bridged sites",
        f"before: {result['before'].summary()}; hub restarted under load: {report.summary()}; "
        f"site A down: {result['during_a_down'].summary()}; after fail-back: {result['after'].summary()}",
    )
    assert result["before"].answered == 6
    assert not report.lost, report.summary()
    assert report.answered == TASKS, report.summary()
    assert result["hub_again"], "the hub did not learn the fleet again after its restart"
    assert result["a_again"], "site A did not see the fleet re-announced after the hub restart"
    assert result["on_hub"], "alice did not fail over to the hub when site A stopped"
    assert result["during_a_down"].answered == 6, result["during_a_down"].summary()
    assert result["back"], "alice did not fail back to site A"
    assert result["after"].answered == 6, result["after"].summary()


async def wait_for(condition: Any, timeout: float = 20.0) -> bool:
    """Poll `condition` every 0.1 s, at most `timeout` seconds."""
    for _ in range(int(timeout * 10)):
        if condition():
            return True
        await asyncio.sleep(0.1)
    return bool(condition())


@pytest.mark.mosquitto
def test_a_tls_bridge_carries_a_site_beacon_to_the_hub(tmp_path: Path, fabric: str):
    """With `tls: true` the bridge verifies the hub's certificate and presents its own client certificate."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    output, ports = render_fleet(tmp_path, fabric, tls=True)
    assert "bridge_certfile" in (output / "broker/hosts/gw-b/mosquitto.conf").read_text()
    brokers = [broker_process(output, host, ports[host], tmp_path) for host in ("hub", "gw-b")]
    node_config = output / "nodes" / ROUTER / "node.yaml"
    topics = Topics(fabric)

    async def scenario() -> bytes:
        at_hub = FabricClient(settings(node_config, brokers=(f"mqtts://127.0.0.1:{ports['hub']}",)), "hub-reader")
        received: asyncio.Queue[bytes] = asyncio.Queue()
        await at_hub.subscribe(topics.beacon(ROUTER), lambda topic, payload: received.put_nowait(payload))
        await at_hub.connect()
        at_site = FabricClient(settings(node_config, brokers=(f"mqtts://127.0.0.1:{ports['gw-b']}",)), ROUTER)
        await at_site.connect()
        try:
            for _ in range(100):  # the bridge may still be connecting: publish until the hub hears it
                await at_site.publish_confirmed(topics.beacon(ROUTER), b"beacon over TLS", retain=True)
                with contextlib.suppress(asyncio.TimeoutError):
                    return await asyncio.wait_for(received.get(), 0.2)
            return b""
        finally:
            await at_site.close()
            await at_hub.close()

    for broker in brokers:
        broker.start()
    try:
        assert bounded(scenario(), 60) == b"beacon over TLS"
    finally:
        for broker in brokers:
            broker.stop()


# --- many sites (issue 22): locality, summaries across the links, a site cut off from the hub -------------------

SITES_INVENTORY = """\
[hub]
hub ansible_host=127.0.0.1 broker_port={hub}
[gateways]
gw-a ansible_host=127.0.0.1 broker_port={a}
gw-b ansible_host=127.0.0.1 broker_port={b}
[site_a]
board-a1
board-a2
[site_b]
board-b1
"""

SITES_FLEET = """\
fabric: {fabric}
prefix: {prefix}
broker:
  hosts: [hub]
  bind: 127.0.0.1
  tls: {tls}
  wan: summaries
  sites:
    a: {{broker: gw-a, members: [site_a], clients: [alice]}}
    b: {{broker: gw-b, members: [site_b]}}
agents:
  board-a2: [{{preset: math, backend: echo, max_in_flight: 4, backend_settings: {{delay_s: 0.2}}}}]
  board-b1: [{{preset: math, backend: echo, max_in_flight: 4, backend_settings: {{delay_s: 0.2}}}}]
routers: [board-a1, board-b1]
clients: [alice]
"""
LOCAL_AGENT, SITE_B_AGENT = "board-a2-math", "site:b"


class SummaryWatcher:
    """Reads the sites' summaries at one broker (with a router's account, which may read them)."""

    def __init__(self, connection: ConnectionSettings) -> None:
        self.topics = Topics(connection.fabric)
        self.client = FabricClient(connection, f"summaries-{uuid.uuid4().hex[:6]}")
        self.heard: list[tuple[float, SiteSummary]] = []

    async def start(self) -> None:
        await self.client.subscribe(self.topics.site_summaries(), self._on_summary)
        await self.client.connect()

    def _on_summary(self, topic: str, payload: bytes) -> None:
        with contextlib.suppress(MessageError):
            self.heard.append((time.monotonic(), decode(payload, SiteSummary)))

    def live_at(self, site: str, since: float = 0.0) -> bool:
        """A summary of `site` with a live agent arrived after `since`, newer than all heard before: a retained copy
        that a restarted hub replays arrives before the far site's bridge is back, and proves no path to it."""
        before = [(summary.epoch, summary.seq) for at, summary in self.heard if at < since and summary.site == site]
        newest = max(before, default=(-1, -1))
        return any(
            at >= since
            and summary.site == site
            and (summary.epoch, summary.seq) > newest
            and any(entry.agents_live for entry in summary.entries)
            for at, summary in self.heard
        )


async def answered_by(alice: FabricTaskClient, count: int, prefix: str) -> list[tuple[str, list[str]]]:
    """Submit `count` one-run tasks; returns each answer's agent and the placements of its trace."""
    found = []
    for index in range(count):
        placements: list[str] = []

        def on_event(event: TaskEvent, placements: list[str] = placements) -> None:
            if event.event == "placed":
                placements.append(str(event.data.get("reason")))

        answer = await alice.submit(
            f"What is {index} + {index}?",
            task_id=f"{prefix}-{index}-{uuid.uuid4().hex[:6]}",
            cot_count=1,
            deadline_s=20.0,
            timeout_s=45.0,
            resend_every_s=3.0,
            on_event=on_event,
        )
        found.append((answer.subtasks[-1].ballots[0].agent_id, placements))
    return found


@pytest.mark.slow
@pytest.mark.mosquitto
def test_a_site_answers_its_own_tasks_crosses_by_summary_when_it_must_and_when_cut_off(
    tmp_path: Path, fabric: str, subprocess_env: dict[str, str]
):
    """Site A (router, one agent) and site B (router + agent), bridged with `wan: summaries`. Alice at A is
    answered by A's agent while it lives; without it, by site B through B's summary and B's router (the site
    agent); with the hub down, A still answers its own tasks; with the hub back, A reaches B again."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    output, ports = render_fleet(tmp_path, fabric, inventory=SITES_INVENTORY, fleet_text=SITES_FLEET)
    assert "agent/site:b/run out" in (output / "broker/hosts/gw-a/mosquitto.conf").read_text()
    brokers = {host: broker_process(output, host, port, tmp_path) for host, port in ports.items()}
    (tmp_path / "fleet").mkdir()
    fleet = Fleet(tmp_path / "fleet", subprocess_env, fabric, [])
    fleet.cli_options = ("-v",)  # every run and placement in the logs: a failure's story
    router_a = output / "nodes" / "board-a1" / "node.yaml"
    at_a = Watcher(settings(router_a, brokers=(brokers["gw-a"].url,)))
    summaries_at_a = SummaryWatcher(settings(router_a, brokers=(brokers["gw-a"].url,)))

    async def scenario() -> dict[str, Any]:
        await at_a.start()
        await summaries_at_a.start()
        try:
            fleet.start_router_node("board-a1", router_a)
            fleet.start_node("board-a2", output / "nodes/board-a2/node.yaml")
            fleet.start_node("board-b1", output / "nodes/board-b1/node.yaml", "--router")
            ready = await at_a.wait_until(
                lambda: at_a.online("board-a2") and {"board-a1", "board-b1"} <= set(at_a.presences), 40
            )
            assert ready, f"site A is not up: {fleet.log_text('board-a1')[-2000:]}"
            assert await wait_for(lambda: summaries_at_a.live_at("b"), 40), "B's summary never reached site A"
            assert "board-b1" not in at_a.beacons, "a board's beacon crossed a summarised bridge"
            alice_settings = settings(output / "clients" / "alice.yaml")
            async with FabricTaskClient(alice_settings) as alice:
                at_home = await answered_by(alice, 4, "home")
                fleet.processes["board-a2"].terminate()  # graceful: its offline beacon goes out at once
                assert await at_a.wait_until(lambda: not at_a.online("board-a2"), 30)
                crossed = await answered_by(alice, 4, "crossed")
                fleet.start_node("board-a2", output / "nodes/board-a2/node.yaml")
                assert await at_a.wait_until(lambda: at_a.online("board-a2"), 30)
                brokers["hub"].stop()
                cut_at = time.monotonic()
                cut_off = await answered_by(alice, 4, "cut")
                brokers["hub"].start()
                back = await wait_for(lambda: summaries_at_a.live_at("b", since=cut_at), 60)
                fleet.processes["board-a2"].terminate()
                assert await at_a.wait_until(lambda: not at_a.online("board-a2"), 30)
                rejoined = await answered_by(alice, 2, "rejoined")
            return {"home": at_home, "crossed": crossed, "cut": cut_off, "back": back, "rejoined": rejoined}
        finally:
            await at_a.close()
            await summaries_at_a.client.close()

    for broker in brokers.values():
        broker.start()
    try:
        result = bounded(scenario(), 300)
    finally:
        fleet.stop_all()
        for broker in brokers.values():
            broker.stop()
    report_line(
        "sites",
        " ".join(f"{name}: {[agent for agent, _ in result[name]]}" for name in ("home", "crossed", "cut", "rejoined")),
    )
    assert all(agent == LOCAL_AGENT for agent, _ in result["home"]), result["home"]
    assert all("local_qualifies" in placed for _, placed in result["home"]), result["home"]
    assert all(agent == SITE_B_AGENT for agent, _ in result["crossed"]), result["crossed"]
    assert all("no_local_agent" in placed for _, placed in result["crossed"]), result["crossed"]
    assert all(agent == LOCAL_AGENT for agent, _ in result["cut"]), result["cut"]
    assert result["back"], "site B's summary did not reach site A again after the hub came back"
    assert all(agent == SITE_B_AGENT for agent, _ in result["rejoined"]), result["rejoined"]


@pytest.mark.mosquitto
def test_a_site_router_may_publish_its_own_sites_summary_only(tmp_path: Path, fabric: str):
    """On the rendered ACL (the hub's mosquitto): a router at site B that forges site A's summary, and a plain
    board that publishes a summary at all, are dropped by the broker; B's own summary gets through."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    output, ports = render_fleet(tmp_path, fabric, inventory=SITES_INVENTORY, fleet_text=SITES_FLEET)
    hub = broker_process(output, "hub", ports["hub"], tmp_path)
    topics = Topics(fabric)

    def connection(node: str) -> ConnectionSettings:
        return settings(output / "nodes" / node / "node.yaml", brokers=(hub.url,))

    async def scenario() -> list[str]:
        received: list[str] = []
        reader = FabricClient(connection("board-a1"), "summary-reader")
        await reader.subscribe(topics.site_summaries(), lambda topic, payload: received.append(topic))
        await reader.connect()
        router_b = FabricClient(connection("board-b1"), "board-b1-attacker")
        board = FabricClient(connection("board-a2"), "board-a2-attacker")
        await router_b.connect()
        await board.connect()
        try:
            line = CapabilitySummary(capabilities=("writing",), model="m", agents_live=9, slots=9, free_slots=9)
            forged = SiteSummary(site="a", router_id="board-b1", epoch=1, seq=1, entries=(line,))
            await router_b.publish_confirmed(topics.site_summary("a"), forged)
            await board.publish_confirmed(topics.site_summary("a"), forged)
            own = forged.model_copy(update={"site": "b"})
            await router_b.publish_confirmed(topics.site_summary("b"), own)
            await wait_for(lambda: topics.site_summary("b") in received, 10)
            await asyncio.sleep(0.5)  # anything the broker let through before B's own summary has arrived by now
            return received
        finally:
            for client in (reader, router_b, board):
                await client.close()

    hub.start()
    try:
        received = bounded(scenario(), 60)
    finally:
        hub.stop()
    assert received == [topics.site_summary("b")], received
