"""The router as MQTT topic handlers: registry, task ownership, the pipeline per task, replies and trace.

    beacon/+, state/+          ─► AgentRegistry (who is live, how loaded)
    router/+                   ─► RouterRoster (rendezvous hashing picks each task's owner)
    task/submit                ─► TaskPipeline (if we own the task) ─► reply topic: TaskAnswer | ErrorReply
    router/{id}/inbox          ─► the pending dispatch's future (RunResult, or ErrorReply such as busy)
    task/{task_id}/events      ◄─ trace events

Handlers only decode, call the core, and encode; a malformed message is answered with an ErrorReply when
its reply topic can be read, logged otherwise, and never affects other tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router.bidding import BidCollector
from router.brain import RoutingBrain
from router.identity import resolve_identity
from router.ownership import rendezvous_owner
from router.pipeline import NoAgentsError, TaskPipeline
from router.registry import AgentRegistry, RouterRoster, parse_state
from router.screening import AgentView
from shared.config import ConnectionSettings, RouterSettings
from shared.errors import MessageError
from shared.messages import (
    Bid,
    ErrorReply,
    NodeBeacon,
    RebirthRequest,
    RouterPresence,
    RunRequest,
    RunResult,
    TaskAnswer,
    TaskEvent,
    TaskRequest,
    decode,
    encode,
    peek_reply_route,
)
from shared.mqtt import FabricClient, WillMessage
from shared.topics import Topics

log = logging.getLogger(__name__)
SUMMARY_EVENTS = frozenset({"answered", "failed"})


@dataclass(frozen=True)
class RouterConfig:
    router_id: str
    connection: ConnectionSettings
    state_file: Path | None = None
    save_interval_s: float = 30.0
    stale_after_s: float = 30.0
    seed: int = 0
    frozen: bool = False
    answer_cache_size: int = 1024
    rebirth_on_connect: bool = True  # ask live nodes to republish their beacons on every (re)connect
    share_group: str | None = None  # submissions through `$share/{group}/...`: the broker picks one router


class RouterService:
    """Hosts the routing and voting handlers for one fabric."""

    def __init__(self, config: RouterConfig) -> None:
        self.config = config
        self.router_id = config.router_id
        self.topics = Topics(config.connection.fabric)
        self.reply_topic = self.topics.router_inbox(self.router_id)
        self.instance_id = uuid.uuid4().hex[:12]
        self.epoch = int(time.time() * 1000)
        self.registry = AgentRegistry(config.stale_after_s)
        self.roster = RouterRoster()
        self.brain = self._load_brain()
        self.bids = BidCollector()
        self.client: FabricClient | None = None
        self._pending: dict[str, tuple[RunRequest, asyncio.Future[RunResult]]] = {}
        self._answers: OrderedDict[str, TaskAnswer] = OrderedDict()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._summary_only: set[str] = set()  # tasks whose trace is the final event alone
        self._background: list[asyncio.Task[None]] = []
        self.runs_dispatched = 0
        self.submissions_received = 0  # every task/submit message this router decoded (its share, in a group)

    # --- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        presence_topic = self.topics.router_presence(self.router_id)
        will = WillMessage(presence_topic, encode(self._presence("offline")))
        self.client = FabricClient(self.config.connection, f"router-{self.router_id}", will=will)
        self.client.on_connected(self._announce)
        handlers = {
            self.topics.beacons(): self._on_beacon,
            self.topics.states(): self._on_state,
            self.topics.router_presences(): self._on_presence,
            self._submit_filter(): self._on_submit,
            self.reply_topic: self._on_inbox,
            self.topics.router_bids(self.router_id): self._on_bid,
        }
        for topic_filter, handler in handlers.items():
            await self.client.subscribe(topic_filter, handler)
        await self.client.connect()
        self.roster.apply(self._presence("online"))
        self._background.append(asyncio.create_task(self._save_forever(), name=f"router[{self.router_id}].save"))

    def _submit_filter(self) -> str:
        """task/submit, shared by the routers of a group when one is configured (each task reaches one of them)."""
        if self.config.share_group is None:
            return self.topics.task_submit()
        return self.topics.shared(self.config.share_group, self.topics.task_submit())

    async def stop(self) -> None:
        for task in [*self._background, *self._in_flight.values()]:
            task.cancel()
        self.save()
        if self.client is not None:
            offline = (self.topics.router_presence(self.router_id), encode(self._presence("offline")), True)
            await self.client.close(final_messages=[offline])

    def save(self) -> None:
        if self.config.state_file is not None and not self.config.frozen:
            self.brain.save(self.config.state_file)

    def _load_brain(self) -> RoutingBrain:
        if self.config.state_file is None:
            return RoutingBrain(seed=self.config.seed)
        return RoutingBrain.load(self.config.state_file, seed=self.config.seed, frozen=self.config.frozen)

    async def _save_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.save_interval_s)
            await asyncio.to_thread(self.save)

    def _presence(self, status: str) -> RouterPresence:
        return RouterPresence(
            router_id=self.router_id,
            instance_id=self.instance_id,
            epoch=self.epoch,
            status=status,  # type: ignore[arg-type]
            sent_at=time.time(),
        )

    def _announce(self) -> None:
        assert self.client is not None
        self.client.publish(self.topics.router_presence(self.router_id), self._presence("online"), retain=True)
        if self.config.rebirth_on_connect:  # brokers that lose retained beacons or keep them node-local
            self.request_rebirth()

    def request_rebirth(self, spread_s: float = 1.0) -> None:
        """Ask every live node to republish its beacon (Sparkplug's rebirth); answers come within `spread_s`."""
        assert self.client is not None
        request = RebirthRequest(router_id=self.router_id, spread_s=spread_s, sent_at=time.time())
        self.client.publish(self.topics.rebirth(), request)

    # --- fabric state ---------------------------------------------------------------------------------------

    def _on_beacon(self, topic: str, payload: bytes) -> None:
        node_id = self.topics.last_level(topic)
        if not payload:
            self._fail_pending(self.registry.agent_ids_of(node_id), "node decommissioned")
            self.registry.forget_node(node_id)
            return
        beacon = self._decode_or_log(payload, NodeBeacon)
        if beacon is None or beacon.node_id != node_id:
            return
        if self.registry.apply_beacon(beacon, time.monotonic()) and beacon.status == "offline":
            self._fail_pending({agent.agent_id for agent in beacon.agents}, f"node {node_id} went offline")

    def _on_state(self, topic: str, payload: bytes) -> None:
        try:
            state = parse_state(payload)
        except MessageError as error:
            log.info("ignoring a malformed NodeState: %s", error)
            return
        self.registry.apply_state(state, time.monotonic())

    def _on_presence(self, topic: str, payload: bytes) -> None:
        if not payload:
            self.roster.forget(self.topics.last_level(topic))
            return
        presence = self._decode_or_log(payload, RouterPresence)
        if presence is not None and presence.router_id != self.router_id:
            self.roster.apply(presence)

    def live_agents(self) -> Sequence[AgentView]:
        return self.registry.live_agents(time.monotonic(), self.brain.reliability)

    # --- tasks ----------------------------------------------------------------------------------------------

    def _on_submit(self, topic: str, payload: bytes) -> None:
        self.submissions_received += 1
        try:
            request: TaskRequest = decode(payload, TaskRequest)
        except MessageError as error:
            self._refuse(payload, "bad_request", str(error))
            return
        if self.config.share_group is None and rendezvous_owner(request.task_id, self.roster.live()) != self.router_id:
            return  # another live router owns this task (with a shared subscription the broker chose us)
        if request.task_id in self._answers:
            replay = self._answers[request.task_id].model_copy(update={"replayed": True})
            self._publish(request.reply_topic, replay)
            return
        if request.task_id in self._in_flight:
            return  # a resend while we work on it: the answer will come once
        task = asyncio.create_task(self._handle_task(request), name=f"router[{self.router_id}].task")
        self._in_flight[request.task_id] = task
        if request.options.trace == "summary":
            self._summary_only.add(request.task_id)

    async def _handle_task(self, request: TaskRequest) -> None:
        try:
            reply = await self._answer(request)
        finally:
            self._in_flight.pop(request.task_id, None)
            self._summary_only.discard(request.task_id)
        if isinstance(reply, TaskAnswer):
            self._remember(reply)
        self._publish(request.reply_topic, reply)

    async def _answer(self, request: TaskRequest) -> TaskAnswer | ErrorReply:
        task_id = request.task_id
        try:
            pipeline = TaskPipeline(
                request, self.brain, await self._agents_for(request), self, self.router_id, time.monotonic
            )
            return await asyncio.wait_for(pipeline.execute(), request.options.deadline_s)
        except asyncio.TimeoutError:
            message = f"no answer within the deadline of {request.options.deadline_s:g} s"
            self.emit(task_id, "failed", {"code": "timeout"})
            return ErrorReply(code="timeout", message=message, task_id=task_id)
        except NoAgentsError as error:
            self.emit(task_id, "failed", {"code": "no_agents", "message": str(error)})
            return ErrorReply(code="no_agents", message=str(error), task_id=task_id)
        except Exception as error:  # a bug in one task must not take the router down; the client is told
            log.exception("task %s failed", task_id)
            self.emit(task_id, "failed", {"code": "internal_error"})
            return ErrorReply(code="internal_error", message=f"{type(error).__name__}: {error}"[:4000], task_id=task_id)

    async def _agents_for(self, request: TaskRequest) -> Any:
        """The agent source of the pipeline: the registry, or the agents that answered a bid round."""
        if request.options.selection == "registry":
            return self.live_agents
        assert self.client is not None
        views = await self.bids.collect(self.client, self.topics, self.router_id, request, list(self.live_agents()))
        self.emit(request.task_id, "screened", {"bids": [view.agent_id for view in views]})
        return lambda: views

    def _remember(self, answer: TaskAnswer) -> None:
        self._answers[answer.task_id] = answer
        while len(self._answers) > self.config.answer_cache_size:
            self._answers.popitem(last=False)

    def _refuse(self, payload: bytes, code: str, message: str) -> None:
        reply_topic, task_id, _ = peek_reply_route(payload)
        log.info("refused a task (%s): %s", code, message[:300])
        if reply_topic is not None:
            self._publish(reply_topic, ErrorReply(code=code, message=message[:4000], task_id=task_id))

    # --- RunPort (used by the pipeline) ---------------------------------------------------------------------

    async def run(self, request: RunRequest, timeout_s: float) -> RunResult:
        """Dispatch a run to its agent and wait for the result; failures come back as error results."""
        assert self.client is not None
        future: asyncio.Future[RunResult] = asyncio.get_running_loop().create_future()
        self._pending[request.dispatch_id] = (request, future)
        self.runs_dispatched += 1
        self._publish(self.topics.agent_run(request.agent_id), request)
        try:
            # asyncio.wait, not wait_for: wait_for may swallow a cancellation (an early-stopped vote) when the
            # result lands in the same loop iteration, and the cancelled run would then report after the answer.
            await asyncio.wait([future], timeout=timeout_s)
        finally:
            self._pending.pop(request.dispatch_id, None)
        if not future.done():
            return _failed(request, "timeout", f"no result within {timeout_s:g} s")
        return future.result()

    def emit(self, task_id: str, event: str, data: dict[str, Any]) -> None:
        if task_id in self._summary_only and event not in SUMMARY_EVENTS:
            return  # nobody follows this task step by step: a packet (and its encoding) saved
        message = TaskEvent(task_id=task_id, router_id=self.router_id, event=event, at=time.time(), data=data)  # type: ignore[arg-type]
        self._publish(self.topics.task_events(task_id), message, qos=0)

    def _on_inbox(self, topic: str, payload: bytes) -> None:
        try:
            message = decode(payload)
        except MessageError as error:
            log.info("ignoring a malformed inbox message: %s", error)
            return
        if isinstance(message, RunResult):
            self._resolve(message.dispatch_id, message)
        elif isinstance(message, ErrorReply) and message.dispatch_id:
            entry = self._pending.get(message.dispatch_id)
            if entry is not None:
                kind = message.code if message.code in ("busy", "bad_request") else "backend_error"
                self._resolve(message.dispatch_id, _failed(entry[0], kind, message.message))

    def _on_bid(self, topic: str, payload: bytes) -> None:
        bid = self._decode_or_log(payload, Bid)
        if bid is not None:
            self.bids.offer(bid)

    def _resolve(self, dispatch_id: str, result: RunResult) -> None:
        entry = self._pending.get(dispatch_id)
        if entry is not None and not entry[1].done():
            entry[1].set_result(result)

    def _fail_pending(self, agent_ids: set[str], reason: str) -> None:
        for request, future in list(self._pending.values()):
            if request.agent_id in agent_ids and not future.done():
                future.set_result(_failed(request, "backend_error", reason))

    # --- plumbing -------------------------------------------------------------------------------------------

    def _publish(self, topic: str, message: Any, qos: int = 1) -> None:
        assert self.client is not None
        self.client.publish(topic, message, qos=qos)

    def _decode_or_log(self, payload: bytes, expected: type[Any]) -> Any:
        try:
            return decode(payload, expected)
        except MessageError as error:
            log.info("ignoring a malformed %s: %s", expected.__name__, error)
            return None


def _failed(request: RunRequest, kind: str, message: str) -> RunResult:
    """The result of a run that produced nothing (timeout, agent death, refusal)."""
    return RunResult(
        dispatch_id=request.dispatch_id,
        task_id=request.task_id,
        agent_id=request.agent_id,
        node_id="unknown",
        error=kind,  # type: ignore[arg-type]
        error_message=message,
    )


def router_config(
    connection: ConnectionSettings, settings: RouterSettings | None, state_dir: Path, frozen: bool = False
) -> RouterConfig:
    """The router's settings; its id and state file are stable across restarts (see router.identity)."""
    settings = settings or RouterSettings()
    identity = resolve_identity(state_dir, settings.router_id, settings.state_file)
    return RouterConfig(
        router_id=identity.router_id,
        connection=connection,
        state_file=identity.state_file,
        save_interval_s=settings.save_interval_s,
        stale_after_s=settings.stale_after_s,
        seed=settings.seed,
        frozen=frozen,
        share_group=settings.share_group,
        rebirth_on_connect=settings.rebirth_on_connect,
    )


@contextlib.asynccontextmanager
async def hosted_router(
    connection: ConnectionSettings, settings: RouterSettings | None, state_dir: Path
) -> AsyncIterator[RouterService]:
    """Run a router for the lifetime of the context (used by `edge-agent start --router` and the demo)."""
    service = RouterService(router_config(connection, settings, state_dir))
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
