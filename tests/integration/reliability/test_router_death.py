"""One of two routers is SIGKILLed mid-load: the survivor takes over its tasks as clients resend (issue 7.3)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from integration.reliability.fleet import Watcher, bounded, connection, drive_load, report_line, start_fleet
from support import RunningBroker

from shared.client import FabricTaskClient
from shared.messages import TaskAnswer

AGENTS = ("edge-a", "edge-b", "edge-c")
TASKS = 80


@pytest.mark.slow
def test_survivor_router_answers_the_dead_routers_tasks(mosquitto_broker: RunningBroker, fabric: str, fleet_factory):
    fleet = fleet_factory(fabric, [mosquitto_broker.url])
    settings = connection([mosquitto_broker.url], fabric)
    watcher = Watcher(settings)

    async def scenario():
        await watcher.start()
        try:
            await start_fleet(fleet, watcher, ("router-1", "router-2"), AGENTS)
            await asyncio.sleep(0.5)  # each router hears the other's presence
            async with FabricTaskClient(settings) as client:
                load = asyncio.ensure_future(drive_load(client, TASKS, concurrency=8, deadline_s=10.0))
                await watcher.wait_until(lambda: len(watcher.replies) >= 10, 20)
                fleet.kill("router-1")
                return await load
        finally:
            await watcher.close()

    report = bounded(scenario(), 150)
    answered_by = Counter(r.router_id for r in report.outcomes.values() if isinstance(r, TaskAnswer))
    taken_over = [
        task_id
        for task_id, events in watcher.events.items()
        if {e.router_id for e in events} == {"router-1", "router-2"}
    ]
    report_line(
        "router death",
        f"{report.summary()} answered by {dict(answered_by)}; tasks started on router-1 and finished on "
        f"router-2: {len(taken_over)}; answered twice={len(watcher.duplicate_answers())}",
    )
    assert not report.lost, report.summary()
    assert all(reply.code == "timeout" for reply in report.failed), report.failed
    assert answered_by["router-2"] > 0 and fleet.alive("router-2")
    assert not watcher.duplicate_answers()
