"""The broker restarts under load: everything reconnects and re-announces, nothing is lost or answered twice (7.2).

amqtt keeps retained messages in memory only, so after its restart the beacons exist again only because every
node and router re-announces on reconnect.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from integration.reliability.fleet import Watcher, bounded, connection, drive_load, report_line, start_fleet
from support import RunningBroker

from shared.client import FabricTaskClient

AGENTS = ("edge-a", "edge-b", "edge-c")
COMPONENTS = {*AGENTS, "router-1"}
TASKS = 60


@pytest.mark.slow
def test_broker_restart_under_load(any_broker: RunningBroker, fabric: str, fleet_factory):
    fleet = fleet_factory(fabric, [any_broker.url])
    settings = connection([any_broker.url], fabric)
    watcher = Watcher(settings)

    async def scenario():
        await watcher.start()
        try:
            await start_fleet(fleet, watcher, ("router-1",), AGENTS)
            async with FabricTaskClient(settings) as client:
                load = asyncio.ensure_future(drive_load(client, TASKS, concurrency=6, deadline_s=10.0))
                await asyncio.sleep(1.0)
                await asyncio.to_thread(any_broker.restart)
                back_at = time.monotonic()
                everyone = lambda: watcher.announced_since(back_at) >= COMPONENTS  # noqa: E731
                reannounced = await watcher.wait_until(everyone, 30)
                reannounce_s = time.monotonic() - back_at
                report = await load
                # after the load: the fabric still answers
                after = await drive_load(client, 6, concurrency=6, deadline_s=10.0, prefix="after")
            await asyncio.sleep(0.5)
            return report, after, reannounced, reannounce_s
        finally:
            await watcher.close()

    report, after, reannounced, reannounce_s = bounded(scenario(), 150)
    duplicates = watcher.duplicate_answers()
    replies = sum(len(r) for r in watcher.replies.values())
    report_line(
        f"broker restart ({any_broker.kind})",
        f"{report.summary()}; re-announced {reannounce_s:.2f} s after the broker was back; replies seen={replies} "
        f"(replayed={sum(getattr(r, 'replayed', False) for rs in watcher.replies.values() for r in rs)}) "
        f"answered twice={len(duplicates)}; after: {after.summary()}",
    )
    assert reannounced, f"not re-announced: {COMPONENTS - watcher.announced_since(0)}"
    assert reannounce_s <= 10.0
    assert not report.lost, report.summary()
    assert all(reply.code == "timeout" for reply in report.failed), report.failed
    assert not duplicates, duplicates
    assert after.answered == 6, after.summary()
    assert all(fleet.alive(name) for name in COMPONENTS)
