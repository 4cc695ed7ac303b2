"""Routers that scale out: a share group on mosquitto hands each submission to one router of the group.

mosquitto serves `$share/{group}/...` to MQTT 3.1.1 clients too (the fabric's clients are 3.1.1). Two routers
share task/submit: every task is answered once, by one of them, and both take part. (On a NATS cluster a
`$share/...` subscription receives nothing, and amqtt has no shared subscriptions: routers there keep
rendezvous hashing, where each router decodes every submission and answers the ones it owns.)
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from integration.reliability.fleet import Watcher, bounded, connection, drive_load

from router.service import RouterConfig, RouterService

TASKS = 20


@pytest.mark.mosquitto
def test_routers_of_a_share_group_each_answer_part_of_the_tasks_once(
    mosquitto_broker, fabric: str, fleet_factory, tmp_path: Path
) -> None:
    url = mosquitto_broker.url
    fleet = fleet_factory(fabric, [url])
    watcher = Watcher(connection([url], fabric))

    async def scenario() -> tuple[Counter[str], int, int]:
        from shared.client import FabricTaskClient

        await watcher.start()
        routers = [
            RouterService(RouterConfig(router_id=f"r{n}", connection=connection([url], fabric), share_group="routers"))
            for n in range(2)
        ]
        try:
            for router in routers:
                await router.start()
            for node_id in ("edge-a", "edge-b"):
                fleet.start_agent(node_id)
            ready = lambda: all(len(r.live_agents()) == 2 for r in routers)  # noqa: E731
            assert await watcher.wait_until(ready, 30)
            async with FabricTaskClient(connection([url], fabric)) as client:
                report = await drive_load(client, TASKS, concurrency=4, deadline_s=10.0)
            assert not report.lost and report.answered == TASKS, report.summary()
            by_router = Counter(reply.router_id for reply in report.outcomes.values())  # type: ignore[union-attr]
            received = sum(router.submissions_received for router in routers)
            return by_router, len(watcher.duplicate_answers()), received
        finally:
            for router in routers:
                await router.stop()
            await watcher.close()

    by_router, duplicates, received = bounded(scenario(), 60)
    assert sum(by_router.values()) == TASKS
    assert set(by_router) == {"r0", "r1"}, by_router  # both routers of the group took tasks
    assert duplicates == 0
    # Each submission reached one router (rendezvous hashing would have both decode all of them: 2 x TASKS).
    assert received < 2 * TASKS, received
