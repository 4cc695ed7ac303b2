"""An edge node on the fabric: beacon, state, and the run topics of the agents it hosts.

connect ──► retained NodeBeacon(online, epoch)          Will: retained NodeBeacon(offline, same epoch)
agent/{id}/run ──► AgentWorker ──► RunResult on the request's reply topic
                  (a dispatch id seen before is not run again: its kept result is sent again, see recent.py)
every state_interval_s or on change ──► NodeState
control/{node_id} (retained NodeControl, operators) ──► drain: beacon `draining`, runs in flight finish
graceful stop ──► retained NodeBeacon(offline)

A draining node keeps serving what reaches it (runs dispatched before the routers saw the beacon) but routers
send it nothing new. `replace_workers` swaps the agents once drained (edge_agent.runtime.desired drives it).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.runtime.epoch import next_epoch
from edge_agent.runtime.homeassistant import HomeAssistantDiscovery
from edge_agent.runtime.recent import RecentRuns
from edge_agent.runtime.worker import AgentWorker, QueueFull
from shared import topics as routes
from shared.config import ConnectionSettings
from shared.errors import MessageError, TransportError
from shared.messages import (
    Bid,
    BidRequest,
    ErrorReply,
    ModelRef,
    NodeBeacon,
    NodeControl,
    NodeState,
    NodeStatus,
    RebirthRequest,
    RunCancel,
    RunChunk,
    RunRefusal,
    RunRequest,
    encode,
    peek_reply_route,
)
from shared.mqtt import FabricClient, WillMessage, unique_client_id
from shared.topics import Topics

log = logging.getLogger(__name__)
STATE_COALESCE_S = 0.05


@dataclass(frozen=True)
class NodeSettings:
    node_id: str
    connection: ConnectionSettings
    state_dir: Path
    state_interval_s: float = 5.0
    software_version: str = ""
    duplicate_wait_s: float | None = None  # how long to watch a retained online beacon for signs of life
    home_assistant_prefix: str | None = None  # publish Home Assistant discovery configs under this prefix


@dataclass
class NodeReport:
    """What the beacon reports besides the agents: the desired state applied, and the models held and served."""

    generation: int = 0
    desired_generation: int = 0
    desired_error: str = ""
    models: tuple[ModelRef, ...] = ()
    model_server: str = ""
    desired_kit: str = ""  # the kit version the desired state names ("": none)
    drain_reasons: set[str] = field(default_factory=set)  # "operator", "swap", "kit": draining while any is set


BeforeConnect = Callable[[FabricClient], Awaitable[None]]
DRAIN_POLL_S = 0.05


class DuplicateNodeError(TransportError):
    """Another live node already uses this node id."""


class EdgeNode:
    """Hosts agents on the fabric until stopped."""

    def __init__(self, settings: NodeSettings, workers: list[AgentWorker]) -> None:
        self.settings = settings
        self.topics = Topics(settings.connection.fabric)
        self.workers = {worker.profile.agent_id: worker for worker in workers}
        self.instance_id = uuid.uuid4().hex[:12]
        self.epoch = 0
        self.client: FabricClient | None = None
        self._state_changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._state_loop: asyncio.Task[None] | None = None
        self.discovery: HomeAssistantDiscovery | None = None
        self.recent = RecentRuns()
        self._rebirth: asyncio.Task[None] | None = None
        self.report = NodeReport()
        self.before_connect: list[BeforeConnect] = []  # more subscriptions (desired state, peers) before CONNECT
        self._retired: set[str] = set()  # agents swapped out: a late run for them is answered busy

    # --- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Refuse a duplicate node id, connect, announce the beacon and start serving."""
        wait_s = self.settings.duplicate_wait_s
        if wait_s is None:
            wait_s = min(2.5 * self.settings.state_interval_s, 15.0)
        duplicate = await find_live_duplicate(self.settings, self.topics, self.instance_id, wait_s)
        if duplicate is not None:
            raise DuplicateNodeError(
                f"node id {duplicate.node_id!r} is already live on the fabric (instance {duplicate.instance_id}, "
                f"host {duplicate.host or '?'}, epoch {duplicate.epoch}); stop it or choose another --node-id"
            )
        self.epoch = next_epoch(self.settings.state_dir, self.settings.node_id)
        will = WillMessage(self.topics.beacon(self.settings.node_id), encode(self.beacon("offline")))
        # One client id per process (a restarted node never takes over the old connection's id; nobody guesses it).
        client_id = unique_client_id(f"node-{self.settings.node_id}")
        self.client = FabricClient(self.settings.connection, client_id, will=will)
        self.client.on_connected(self._announce)
        for agent_id in self.workers:
            await self._route_runs(agent_id)
        await self.client.route(routes.BID_REQUEST.on(self.topics), self._on_bid_request)
        await self.client.route(routes.REBIRTH.on(self.topics), self._on_rebirth_request)
        control = routes.CONTROL.on(self.topics, self.settings.node_id)
        await self.client.route(control, self._on_control, on_clear=self._on_control_cleared)
        for hook in self.before_connect:
            await hook(self.client)
        await self.client.connect()
        if self.settings.home_assistant_prefix is not None:
            self.discovery = HomeAssistantDiscovery(self.client, self.topics, self.settings.home_assistant_prefix)
            await self.discovery.start(self.beacon("online"))
        self._state_loop = asyncio.create_task(
            self._publish_state_forever(), name=f"node[{self.settings.node_id}].state"
        )

    async def stop(self) -> None:
        """Publish the offline beacon and disconnect cleanly."""
        if self._state_loop is not None:
            self._state_loop.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self.client is not None:
            offline = (self.topics.beacon(self.settings.node_id), encode(self.beacon("offline")), True)
            await self.client.close(final_messages=[offline])
        for worker in self.workers.values():
            worker.backend.close()

    # --- messages -----------------------------------------------------------------------------------------

    def beacon(self, status: NodeStatus) -> NodeBeacon:
        return NodeBeacon(
            node_id=self.settings.node_id,
            epoch=self.epoch,
            instance_id=self.instance_id,
            status=status,
            agents=tuple(worker.info() for worker in self.workers.values()),
            software_version=self.settings.software_version,
            host=socket.gethostname(),
            sent_at=time.time(),
            site=self.settings.connection.site,
            generation=self.report.generation,
            desired_generation=self.report.desired_generation,
            desired_error=self.report.desired_error[:2000],
            drain_requested="operator" in self.report.drain_reasons,
            models=self.report.models[:256],
            model_server=self.report.model_server,
            desired_kit=self.report.desired_kit,
        )

    @property
    def status(self) -> NodeStatus:
        """`draining` while an operator or a swap asks for it, else `online`."""
        return "draining" if self.report.drain_reasons else "online"

    def announce(self) -> None:
        """Publish the beacon again (a change of status, generation or models)."""
        if self.client is not None and self.client.is_connected:
            self._announce()

    # --- drain and swap -----------------------------------------------------------------------------------

    def set_draining(self, reason: str, draining: bool) -> None:
        """Start or stop one reason to drain; the beacon says `draining` while any reason holds."""
        before = self.status
        (self.report.drain_reasons.add if draining else self.report.drain_reasons.discard)(reason)
        if self.status != before or reason == "operator":
            self.announce()

    def runs_in_flight(self) -> int:
        return sum(worker.in_flight + worker.waiting for worker in self.workers.values())

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no run is queued or running (True), or `timeout_s` passed (False)."""
        deadline = time.monotonic() + timeout_s
        while self.runs_in_flight():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(DRAIN_POLL_S)
        return True

    async def replace_workers(self, workers: list[AgentWorker]) -> list[AgentWorker]:
        """Serve `workers` instead of the current agents; returns the old ones (their runs are cancelled).

        Call it drained: a run still going on an old agent is cancelled, and its router re-dispatches it.
        """
        old = list(self.workers.values())
        new_ids = {worker.profile.agent_id for worker in workers}
        for worker in old:
            worker.cancel_all()
            if worker.profile.agent_id not in new_ids and self.client is not None:
                self._retired.add(worker.profile.agent_id)
                await self.client.unsubscribe(self.topics.agent_run(worker.profile.agent_id))
        self.workers = {worker.profile.agent_id: worker for worker in workers}
        for agent_id in new_ids:
            self._retired.discard(agent_id)
            if self.client is not None and agent_id not in {w.profile.agent_id for w in old}:
                await self._route_runs(agent_id)
        self.recent = RecentRuns()  # dispatch ids of the old agents mean nothing to the new ones
        self._state_changed.set()
        return old

    def state(self) -> NodeState:
        return NodeState(
            node_id=self.settings.node_id,
            epoch=self.epoch,
            agents=tuple(worker.state() for worker in self.workers.values()),
            sent_at=time.time(),
        )

    def _announce(self) -> None:
        assert self.client is not None
        self.client.publish(self.topics.beacon(self.settings.node_id), self.beacon(self.status), retain=True)
        self._state_changed.set()
        if self.discovery is not None:
            self.discovery.publish()

    async def _publish_state_forever(self) -> None:
        assert self.client is not None
        while True:
            try:
                await asyncio.wait_for(self._state_changed.wait(), self.settings.state_interval_s)
                # A change: wait a moment so a burst (a run starting, then ending) becomes one message sent after
                # the results, not one more packet on the request's critical path.
                await asyncio.sleep(STATE_COALESCE_S)
            except asyncio.TimeoutError:
                pass  # the periodic state
            self._state_changed.clear()
            if self.client.is_connected:
                self.client.publish(self.topics.state(self.settings.node_id), self.state(), qos=0)

    # --- handlers -----------------------------------------------------------------------------------------

    async def _route_runs(self, agent_id: str) -> None:
        assert self.client is not None
        route = routes.AGENT_RUN.on(self.topics, agent_id)
        await self.client.route(route, self._on_run_request, on_invalid=self._on_bad_run_request)

    def _on_bad_run_request(self, topic: str, payload: bytes, error: MessageError) -> None:
        """A run request that does not decode is answered where it names a router's inbox."""
        self._reply_error(peek_reply_route(payload), "bad_request", str(error))

    def _on_run_request(self, topic: str, request: RunRequest | RunCancel) -> None:
        if isinstance(request, RunCancel):
            self._on_cancel(topic, request)
            return
        if self.topics.router_reply_owner(request.reply_topic) is None:
            log.warning(
                "dropped run %s: reply topic %r is not a router inbox", request.dispatch_id, request.reply_topic[:200]
            )
            return
        worker = self.workers.get(request.agent_id)
        if worker is None and request.agent_id in self._retired:
            self._reply_error(route_of(request), "busy", f"agent {request.agent_id!r} was swapped out; ask another")
            return
        if worker is None or topic != self.topics.agent_run(request.agent_id):
            self._reply_error(
                route_of(request), "bad_request", f"agent {request.agent_id!r} does not listen on {topic}"
            )
            return
        seen = self.recent.seen(request.dispatch_id)
        if seen == "running":
            return  # re-asked while it runs: the result is sent once done
        if not isinstance(seen, str):
            assert self.client is not None
            self.client.publish(request.reply_topic, seen)  # re-asked after it ran: its result may have been lost
            return
        try:
            worker.admit()
        except QueueFull as error:
            self._reply_error(route_of(request), "busy", str(error))
            return
        self.recent.started(request.dispatch_id)
        self._state_changed.set()
        task = asyncio.create_task(self._serve(worker, request), name=f"agent[{request.agent_id}].run")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_control_cleared(self, topic: str) -> None:
        self.set_draining("operator", False)

    def _on_control(self, topic: str, control: NodeControl) -> None:
        """An operator's retained order: drain (true) or serve again (false, or the order cleared)."""
        if control.node_id != self.settings.node_id:
            log.warning("ignoring a control message for %r on our topic", control.node_id)
            return
        log.info("operator order: %s (%s)", "drain" if control.drain else "serve", control.reason or "no reason given")
        self.set_draining("operator", control.drain)

    def _on_cancel(self, topic: str, cancel: RunCancel) -> None:
        worker = self.workers.get(cancel.agent_id)
        if worker is not None and topic == self.topics.agent_run(cancel.agent_id) and worker.cancel(cancel.dispatch_id):
            log.debug("agent %s: run %s cancelled (%s)", cancel.agent_id, cancel.dispatch_id, cancel.reason)

    async def _serve(self, worker: AgentWorker, request: RunRequest) -> None:
        assert self.client is not None
        client = self.client

        def send_chunk(chunk: RunChunk) -> None:
            client.publish(request.reply_topic, chunk)

        result = await worker.run(request, send_chunk)
        self.recent.finished(result)
        log.info(
            "agent %s ran %s of task %s for %s",
            request.agent_id,
            request.dispatch_id,
            request.task_id,
            request.reply_topic,
        )
        self.client.publish(request.reply_topic, result)
        self._state_changed.set()

    def _on_rebirth_request(self, topic: str, request: RebirthRequest) -> None:
        """A router asks live nodes to republish their beacons (it could not learn them from retained messages).

        The beacon goes out after a random delay within the request's `spread_s`, so a large fleet does not
        answer in one burst; requests arriving while one is pending are folded into it.
        """
        if self._rebirth is None or self._rebirth.done():
            delay_s = random.uniform(0.0, request.spread_s)
            self._rebirth = asyncio.create_task(
                self._rebirth_after(delay_s), name=f"node[{self.settings.node_id}].rebirth"
            )
            self._tasks.add(self._rebirth)
            self._rebirth.add_done_callback(self._tasks.discard)

    async def _rebirth_after(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if self.client is not None and self.client.is_connected:
            self._announce()

    def _on_bid_request(self, topic: str, request: BidRequest) -> None:
        assert self.client is not None
        if self.topics.router_reply_owner(request.reply_topic) is None:
            log.warning("dropped a bid request: reply topic %r is not a router's", request.reply_topic[:200])
            return
        for worker in self.workers.values():
            state = worker.state()
            bid = Bid(
                request_id=request.request_id,
                agent_id=worker.profile.agent_id,
                node_id=self.settings.node_id,
                match_score=tag_overlap(request.required_tags, worker.profile.capabilities),
                load=state.load,
                latency_ms=state.latency_ema_ms,
                available=state.available,
            )
            self.client.publish(request.reply_topic, bid)

    def _reply_error(self, route: ReplyRoute, code: RunRefusal, message: str) -> None:
        assert self.client is not None
        reply_topic, task_id, dispatch_id = route
        log.info("run request refused (%s): %s", code, message)
        if reply_topic is not None and self.topics.router_reply_owner(reply_topic) is not None:
            error = ErrorReply(code=code, message=message[:4000], task_id=task_id, dispatch_id=dispatch_id)
            self.client.publish(reply_topic, error)


ReplyRoute = tuple[str | None, str | None, str | None]
"""Where a refusal goes: (reply topic, task id, dispatch id), as `peek_reply_route` reads them."""


def route_of(request: RunRequest) -> ReplyRoute:
    return request.reply_topic, request.task_id, request.dispatch_id


def tag_overlap(required: tuple[str, ...], capabilities: tuple[str, ...]) -> float:
    """Share of the required tags this agent has (1.0 when nothing is required)."""
    if not required:
        return 1.0
    have = {tag.lower() for tag in capabilities}
    return sum(tag.lower() in have for tag in required) / len(required)


async def find_live_duplicate(
    settings: NodeSettings, topics: Topics, instance_id: str, wait_s: float
) -> NodeBeacon | None:
    """The live beacon of another instance using our node id, or None.

    A retained online beacon of another instance may be a ghost (its broker lost the Will), so it counts as
    live only if that instance also publishes state within `wait_s`.
    """
    retained: asyncio.Queue[NodeBeacon] = asyncio.Queue()
    alive = asyncio.Event()
    beacon_holder: list[NodeBeacon] = []

    def on_beacon(topic: str, beacon: NodeBeacon) -> None:
        retained.put_nowait(beacon)

    def on_state(topic: str, state: NodeState) -> None:
        if beacon_holder and state.epoch == beacon_holder[0].epoch:
            alive.set()

    probe = FabricClient(settings.connection, f"probe-{settings.node_id}-{instance_id}")
    await probe.route(routes.BEACON.on(topics, settings.node_id), on_beacon)
    await probe.route(routes.STATE.on(topics, settings.node_id), on_state)
    try:
        await probe.connect()
        try:
            beacon = await asyncio.wait_for(retained.get(), 0.5)
        except asyncio.TimeoutError:
            return None
        if beacon.status != "online" or beacon.instance_id == instance_id:
            return None
        beacon_holder.append(beacon)
        try:
            await asyncio.wait_for(alive.wait(), wait_s)
        except asyncio.TimeoutError:
            log.warning("retained beacon of %s looks stale (no state for %.0f s); taking over", beacon.node_id, wait_s)
            return None
        return beacon
    finally:
        await probe.close()
