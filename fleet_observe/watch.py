"""The I/O seam of `status`, `top`, `trace` and the dashboard: MQTT subscriptions feeding a FabricSnapshot.

    beacon/+  state/+  router/+  [task/+/+/events]  ──►  FabricSnapshot (pure)  ──►  `changed` event
    trace/request  ◄──  a TraceRequest every TRACE_REQUEST_S / 3 while it watches every task (`full_traces`)

Malformed payloads are skipped (an observer must never fail because someone else sent garbage).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from fleet_observe.snapshot import FabricSnapshot
from shared import topics as routes
from shared.config import ConnectionSettings
from shared.messages import NodeBeacon, NodeState, RouterPresence, TaskEvent, TraceRequest
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

log = logging.getLogger(__name__)
RETAINED_GRACE_S = 0.3  # retained beacons follow the SUBACK within a few ms; this is the bounded allowance
TRACE_REQUEST_S = 30.0  # how long one request for full traces lasts at the routers (asked again well before)


class FabricWatcher:
    """Subscribes to the fabric's liveness topics (and optionally task events) and keeps a snapshot current."""

    def __init__(
        self,
        connection: ConnectionSettings,
        *,
        task_events: str | None = None,
        clock: Callable[[], float] = time.time,
        snapshot: FabricSnapshot | None = None,
        full_traces: bool = False,
    ) -> None:
        self.topics = Topics(connection.fabric)
        self.snapshot = snapshot or FabricSnapshot()
        self.clock = clock
        self.changed = asyncio.Event()
        self.events: asyncio.Queue[TaskEvent] = asyncio.Queue()
        self.task_events = task_events
        self.client = FabricClient(connection, unique_client_id("observer"))
        self.connected_at = 0.0
        self.full_traces = full_traces  # ask the routers for every task's full trace while watching
        self._asking: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect (raises TransportError when the broker is unreachable or refuses us), then subscribe."""
        await self.client.connect()
        self.connected_at = self.clock()
        await self.client.route(routes.BEACONS.on(self.topics), self._on_beacon, on_clear=self._on_beacon_cleared)
        await self.client.route(routes.STATES.on(self.topics), self._on_state, qos=0)
        await self.client.route(routes.ROUTER_PRESENCES.on(self.topics), self._on_presence)
        if self.task_events is not None:
            await self.client.route(routes.ALL_TASK_EVENTS.at(self.task_events), self._on_event, qos=0)
        if self.full_traces:
            self._asking = asyncio.create_task(self._ask_for_full_traces(), name="observer.trace-request")

    async def close(self) -> None:
        if self._asking is not None:
            self._asking.cancel()
        await self.client.close()

    async def _ask_for_full_traces(self) -> None:
        """Tasks trace a summary unless someone follows them: tell the routers we do, again before it lapses."""
        while True:
            request = TraceRequest(observer_id=self.client.client_id, duration_s=TRACE_REQUEST_S, sent_at=self.clock())
            self.client.publish(self.topics.trace_requests(), request, qos=0)
            await asyncio.sleep(TRACE_REQUEST_S / 3)

    async def settle(self, wait_s: float) -> None:
        """Wait until every online node has sent a state since we connected, or `wait_s` has passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        await asyncio.sleep(min(RETAINED_GRACE_S, wait_s))
        while loop.time() < deadline:
            if self.snapshot.nodes and self.snapshot.every_online_node_has_state(self.connected_at):
                return
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                return

    # --- handlers -----------------------------------------------------------------------------------------

    def _on_beacon_cleared(self, topic: str) -> None:
        self.snapshot.forget_node(self.topics.last_level(topic))
        self.changed.set()

    def _on_beacon(self, topic: str, beacon: NodeBeacon) -> None:
        if self.snapshot.apply_beacon(beacon, self.clock()):
            self.changed.set()

    def _on_state(self, topic: str, state: NodeState) -> None:
        if self.snapshot.apply_state(state, self.clock()):
            self.changed.set()

    def _on_presence(self, topic: str, presence: RouterPresence) -> None:
        if self.snapshot.apply_presence(presence, self.clock()):
            self.changed.set()

    def _on_event(self, topic: str, event: TaskEvent) -> None:
        self.snapshot.apply_event(event, self.clock(), self._event_client(topic))
        self.events.put_nowait(event)
        self.changed.set()

    def _event_client(self, topic: str) -> str:
        """The client account of `{prefix}/task/{client}/{task_id}/events` (the router publishes traces there)."""
        levels = topic[len(self.topics.prefix) + 1 :].split("/")
        is_event_topic = topic.startswith(self.topics.prefix + "/") and len(levels) == 4
        return levels[1] if is_event_topic and levels[0] == "task" and levels[3] == "events" else ""
