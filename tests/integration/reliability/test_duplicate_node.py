"""A second node started with a live node's id is refused with a message naming the live node (issue 7.6)."""

from __future__ import annotations

import asyncio
import subprocess

from integration.reliability.fleet import Watcher, bounded, connection
from support import RunningBroker


def test_second_node_with_a_live_node_id_is_refused(mosquitto_broker: RunningBroker, fabric: str, fleet_factory):
    fleet = fleet_factory(fabric, [mosquitto_broker.url])
    watcher = Watcher(connection([mosquitto_broker.url], fabric))

    async def scenario() -> tuple[int, str, bool]:
        await watcher.start()
        try:
            fleet.start_agent("edge-1")
            assert await watcher.wait_until(lambda: watcher.online("edge-1"), 30), fleet.log_text("edge-1")
            live = watcher.beacons["edge-1"]
            fleet.processes["first"] = fleet.processes.pop("edge-1")
            second = fleet.start_agent("edge-1")
            code = await asyncio.to_thread(second.wait, 60)
            # the live node must be untouched: same instance, still online
            await asyncio.sleep(1.5)
            untouched = watcher.beacons["edge-1"].instance_id == live.instance_id and watcher.online("edge-1")
            return code, fleet.log_text("edge-1") + f"\nlive instance {live.instance_id}", untouched
        finally:
            await watcher.close()

    try:
        code, output, untouched = bounded(scenario(), 120)
    except subprocess.TimeoutExpired as error:
        raise AssertionError("the second node with a duplicate id kept running") from error
    assert code != 0, output
    instance = output.rsplit("live instance ", 1)[1].strip()
    assert "already live" in output and "'edge-1'" in output and instance in output, output
    assert untouched, "the refused node disturbed the live node's beacon"
    assert fleet.alive("first")
