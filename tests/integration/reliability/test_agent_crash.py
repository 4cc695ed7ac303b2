"""Busy agents SIGKILLed at random under load: nothing is lost, runs are re-dispatched (issue 7.1)."""

from __future__ import annotations

import asyncio
import random
import signal
import statistics
import time
from typing import Any

import pytest
from integration.reliability.fleet import (
    KEEPALIVE_S,
    Watcher,
    bounded,
    connection,
    drive_load,
    report_line,
    start_fleet,
)
from support import RunningBroker

from shared.client import FabricTaskClient

AGENTS = ("edge-a", "edge-b", "edge-c")
TASKS = 100
KILLS = 5


@pytest.mark.slow
def test_agents_killed_at_random_lose_no_task(mosquitto_broker: RunningBroker, fabric: str, fleet_factory):
    fleet = fleet_factory(fabric, [mosquitto_broker.url])
    settings = connection([mosquitto_broker.url], fabric)
    watcher = Watcher(settings)
    rng = random.Random(7)
    offline_after: list[float] = []
    missing_offline: list[str] = []

    async def kill_and_restart(stop: asyncio.Event) -> None:
        for _ in range(KILLS):
            if stop.is_set():
                return
            await asyncio.sleep(rng.uniform(1.0, 2.5))
            # A random agent among those running something: a kill that hits no run tests nothing.
            if stop.is_set() or not await watcher.wait_until(watcher.busy_nodes, 2.0):
                return
            node_id = rng.choice(sorted(watcher.busy_nodes()))
            epoch = watcher.beacons[node_id].epoch
            fleet.kill(node_id)
            killed_at = time.monotonic()

            def offline_seen(node_id: str = node_id, epoch: int = epoch) -> bool:
                beacon = watcher.beacons[node_id]
                return beacon.epoch == epoch and beacon.status == "offline"

            if await watcher.wait_until(offline_seen, 4 * KEEPALIVE_S):
                seen = next(t for t, b in reversed(watcher.beacon_log) if b.node_id == node_id)
                offline_after.append(seen - killed_at)
            else:
                missing_offline.append(node_id)
            fleet.start_agent(node_id)
            assert await watcher.wait_until(lambda n=node_id, e=epoch: watcher.online(n, e), 30), fleet.log_text(
                node_id
            )

    async def scenario():
        await watcher.start()
        try:
            await start_fleet(fleet, watcher, ("router-1",), AGENTS)
            async with FabricTaskClient(settings) as client:
                stop = asyncio.Event()
                chaos = asyncio.create_task(kill_and_restart(stop))
                report = await drive_load(client, TASKS, concurrency=6, deadline_s=10.0, resend_every_s=1.0)
                stop.set()
                await chaos
            await asyncio.sleep(0.5)  # the last trace events
            return report
        finally:
            await watcher.close()

    report = bounded(scenario(), 240)
    events = watcher.event_names()
    report_line(
        "agent crash",
        f"{report.summary()} kills={len(offline_after) + len(missing_offline)} redispatched={events['redispatched']}",
    )
    if offline_after:
        report_line(
            "agent crash offline beacon",
            f"after SIGKILL: median {statistics.median(offline_after):.2f} s, max {max(offline_after):.2f} s "
            f"(keepalive {KEEPALIVE_S} s, 1.5 x = {1.5 * KEEPALIVE_S:.1f} s)",
        )
    assert fleet.alive("router-1"), fleet.log_text("router-1")
    assert not report.lost, report.summary()
    assert len(report.outcomes) == TASKS
    for reply in report.failed:  # an ErrorReply is allowed only once the task's deadline has passed
        assert reply.code == "timeout", reply
    assert report.answered >= TASKS * 0.8, report.summary()
    assert events["redispatched"] >= 1, events
    assert not missing_offline, f"no offline beacon within {4 * KEEPALIVE_S} s for {missing_offline}"
    assert max(offline_after) <= 3 * KEEPALIVE_S, offline_after


@pytest.mark.parametrize("broker_kind", ["mosquitto", "amqtt"])
def test_frozen_agent_is_declared_offline_then_served_again(
    broker_kind: str, mosquitto_broker: RunningBroker, amqtt_broker: RunningBroker, fabric: str, fleet_factory
):
    """SIGSTOP (a hung board, or a cut cable) keeps the socket open: only the keepalive finds it out.

    After SIGCONT the node reconnects with the same epoch; its Will has fired meanwhile, and routers must take
    its re-announced birth (they used to ignore it forever: "offline is final for its epoch").
    """
    broker = mosquitto_broker if broker_kind == "mosquitto" else amqtt_broker
    fleet = fleet_factory(fabric, [broker.url])
    settings = connection([broker.url], fabric)
    watcher = Watcher(settings)

    async def scenario() -> tuple[float, Any, Any]:
        await watcher.start()
        try:
            fleet.start_router("router-1")
            fleet.start_agent("edge-a")
            ready = lambda: watcher.online("edge-a") and "router-1" in watcher.presences  # noqa: E731
            assert await watcher.wait_until(ready, 30), fleet.log_text("edge-a")
            async with FabricTaskClient(settings) as client:
                fleet.processes["edge-a"].send_signal(signal.SIGSTOP)
                frozen_at = time.monotonic()
                assert await watcher.wait_until(lambda: watcher.beacons["edge-a"].status == "offline", 10)
                offline_after = time.monotonic() - frozen_at
                during = await drive_load(client, 3, 3, deadline_s=4.0, cot_count=1, prefix="frozen")
                fleet.processes["edge-a"].send_signal(signal.SIGCONT)
                assert await watcher.wait_until(lambda: watcher.online("edge-a"), 15)
                await asyncio.sleep(0.5)  # the router hears the same birth
                after = await drive_load(client, 10, 5, deadline_s=8.0, cot_count=1, prefix="thawed")
            return offline_after, during, after
        finally:
            fleet.processes["edge-a"].send_signal(signal.SIGCONT)  # a stopped process ignores SIGTERM at teardown
            await watcher.close()

    offline_after, during, after = bounded(scenario(), 120)
    report_line(
        f"frozen agent ({broker_kind})",
        f"offline beacon {offline_after:.2f} s after SIGSTOP (keepalive {KEEPALIVE_S} s); while frozen: "
        f"{during.summary()}; after SIGCONT: {after.summary()}",
    )
    assert not during.lost and not after.lost
    assert after.answered == 10, after.summary()
    assert offline_after <= 4 * KEEPALIVE_S
