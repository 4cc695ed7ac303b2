"""The router as MQTT topic handlers: registry, task ownership, the pipeline per task, replies and trace.

    beacon/+, state/+          ─► AgentRegistry (who is live, how loaded)
    router/+                   ─► RouterRoster (rendezvous hashing picks each task's owner)
    task/submit                ─► TaskPipeline (if we own the task) ─► reply topic: TaskAnswer | ErrorReply
                                  TaskCancel ─► the task stops (its runs are cancelled)
    ledger/+  (router-only)    ◄─► TaskLedger: retained claims and answers of every router (router.ledger), so
                                   an answered id is replayed by whichever router owns it and no task is started
                                   while another live router instance runs it
    router/{id}/inbox          ─► the pending dispatch's future (RunResult, or ErrorReply such as busy)
                                  RunChunk of a streamed run ─► TaskChunk on the task's reply topic
    agent/{id}/run             ◄─ RunRequest, and RunCancel for a run no longer awaited (early stop, deadline)
    task/{client}/{task}/events ◄─ trace events (gold answers stripped), in the submitting client's namespace,
                                  and progress TaskChunks of a streamed vote on its reply topic

Handlers only decode, call the core, and encode; a malformed message is answered with an ErrorReply when
its reply topic can be read, logged otherwise, and never affects other tasks. A reply topic is hostile input:
the router publishes only on `{p}/reply/{id}` (a valid id of this fabric); a task whose reply topic is
anything else (a wildcard, `$SYS`, another fabric, a node's topic) is logged and dropped unanswered.

Nothing lost: a router joins only after the retained ledger arrived (`join_sync_s`); a client's resend of a task
in flight is acknowledged (a `resent` event) and re-asks the task's outstanding runs; after a reconnect, and when a
node (re)announces itself, the outstanding runs are re-asked too. A re-asked run keeps its dispatch id: the agent
runs it only if it never got it, else it sends the result again (see edge_agent.runtime.recent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router.bidding import BidCollector
from router.brain import RoutingBrain, write_state
from router.cost_policy import CostAwarePolicy, CostPolicyConfig
from router.identity import resolve_identity
from router.ledger import DEFAULT_RETENTION_S, TaskLedger, answered_entry, claim_entry
from router.ownership import rendezvous_owner
from router.pipeline import UNREACHED_NODE, NoAgentsError, TaskPipeline
from router.registry import AgentRegistry, RouterRoster, parse_state
from router.screening import AgentView
from shared.config import ConnectionSettings, RouterSettings
from shared.errors import MessageError
from shared.messages import (
    Bid,
    ErrorReply,
    LedgerEntry,
    NodeBeacon,
    RebirthRequest,
    RouterPresence,
    RunCancel,
    RunChunk,
    RunRequest,
    RunResult,
    TaskAnswer,
    TaskCancel,
    TaskChunk,
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
    answer_cache_size: int = 20_000  # ledger entries kept (claims and answers of every router)
    answer_retention_s: float = DEFAULT_RETENTION_S  # how long an answered task id is replayed
    join_sync_s: float = 0.3  # quiet time on the retained ledger before a (re)started router takes work
    join_sync_max_s: float = 5.0
    offline_grace_s: float = 1.5  # an offline node's runs fail only if it is not back (same process) by then
    agent_wait_s: float = 5.0  # a task that finds no live agent waits this long (at most half its deadline)
    policy: str = "linucb"
    cancel_runs: bool = True  # tell agents to stop runs no longer awaited (off only to measure what it saves)
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
        self.ledger = TaskLedger(config.answer_retention_s, config.answer_cache_size)
        self._ledger_heard = 0  # ledger messages received (the join waits until they stop coming)
        self._joined = False
        self._stopping = False
        self._event_topics: dict[str, str] = {}  # task id -> its events topic, while the task runs
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._requests: dict[str, TaskRequest] = {}  # the tasks in flight, for their streams and cancels
        self._chunk_seq: dict[str, int] = {}
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
            self.topics.ledgers(): self._on_ledger,
        }
        for topic_filter, handler in handlers.items():
            await self.client.subscribe(topic_filter, handler)
        await self.client.connect()
        await self._sync_ledger()
        self._joined = True
        self.roster.apply(self._presence("online"))
        self._announce()
        self._background.append(asyncio.create_task(self._save_forever(), name=f"router[{self.router_id}].save"))
        self._background.append(asyncio.create_task(self._expire_forever(), name=f"router[{self.router_id}].ledger"))

    async def _sync_ledger(self) -> None:
        """Wait until the retained ledger stopped arriving (bounded), so we know every claim and answer first."""
        deadline = time.monotonic() + self.config.join_sync_max_s
        heard = -1
        while heard != self._ledger_heard and time.monotonic() < deadline:
            heard = self._ledger_heard
            await asyncio.sleep(self.config.join_sync_s)

    def _submit_filter(self) -> str:
        """task/submit, shared by the routers of a group when one is configured (each task reaches one of them)."""
        if self.config.share_group is None:
            return self.topics.task_submit()
        return self.topics.shared(self.config.share_group, self.topics.task_submit())

    async def stop(self) -> None:
        self._stopping = True
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
        cost_policy = None
        if self.config.policy == "cost_aware":
            cost_policy = CostAwarePolicy(CostPolicyConfig(frozen=self.config.frozen))
        if self.config.state_file is None:
            brain = RoutingBrain(seed=self.config.seed)
            brain.cost_policy = cost_policy
            return brain
        return RoutingBrain.load(self.config.state_file, self.config.seed, self.config.frozen, cost_policy)

    async def _save_forever(self) -> None:
        """Save the learning state every `save_interval_s`: snapshot on the loop (which alone mutates the brain),
        write in a thread; a failed save is logged and the next one tried (a full disk must not end saving)."""
        path = self.config.state_file
        while True:
            await asyncio.sleep(self.config.save_interval_s)
            if path is None or self.config.frozen:
                continue
            try:
                await asyncio.to_thread(write_state, path, self.brain.to_dict())
            except Exception as error:  # OSError mostly; any failure of one save must leave the next one to run
                log.warning("could not save the router state to %s (%s); trying again later", path, error)

    def _presence(self, status: str) -> RouterPresence:
        return RouterPresence(
            router_id=self.router_id,
            instance_id=self.instance_id,
            epoch=self.epoch,
            status=status,  # type: ignore[arg-type]
            sent_at=time.time(),
        )

    def _announce(self) -> None:
        """On every (re)connect once joined: announce ourselves, and re-ask the runs whose results may be lost."""
        assert self.client is not None
        if not self._joined:
            return  # the first connect: start() announces once the ledger is synced
        self.client.publish(self.topics.router_presence(self.router_id), self._presence("online"), retain=True)
        if self.client.connect_count > 1:
            self._reask(lambda request: True)
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
        previous = self.registry.nodes.get(node_id)
        if not self.registry.apply_beacon(beacon, time.monotonic()):
            return
        agent_ids = {agent.agent_id for agent in beacon.agents}
        if beacon.status == "offline":  # a broker that restarts may publish every Will: the node may come back
            loop = asyncio.get_running_loop()
            loop.call_later(self.config.offline_grace_s, self._fail_if_offline, node_id, agent_ids, beacon.epoch)
        elif previous is not None and previous.beacon.epoch != beacon.epoch:  # a new process: our runs died
            self._fail_pending(agent_ids, f"node {node_id} restarted")
        else:  # (re)announced, e.g. after a broker restart: it may have missed our runs, or we its results
            self._reask(lambda request: request.agent_id in agent_ids)

    def _fleet_settling_s(self) -> float:
        """Seconds until the nodes have had their chance to re-announce to us (0: they have had it).

        A broker that stops may publish every node's Will just before it goes. While we are cut off, nothing can
        be known; right after our own reconnect, every node comes back at its own reconnect pace (a growing
        delay, seconds) and gets `agent_wait_s`, the time a task waits for agents. (Not after our first connect:
        nothing of ours is in flight then.)
        """
        assert self.client is not None
        if not self.client.is_connected:
            return self.config.offline_grace_s
        since = self.client.connected_since
        if self.client.connect_count > 1 and since is not None:
            return max(0.0, since + self.config.agent_wait_s - time.monotonic())
        return 0.0

    def _fail_if_offline(self, node_id: str, agent_ids: set[str], epoch: int) -> None:
        """A node's offline Will's grace is over: fail our runs on its agents unless it came back (or may yet)."""
        settling_s = self._fleet_settling_s()
        if settling_s > 0:
            asyncio.get_running_loop().call_later(settling_s, self._fail_if_offline, node_id, agent_ids, epoch)
            return
        record = self.registry.nodes.get(node_id)
        if record is None or not record.online or record.beacon.epoch != epoch:
            self._fail_pending(agent_ids, f"node {node_id} went offline")

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
        if presence is None:
            return
        if presence.router_id == self.router_id:
            self._deny_own_will(presence)
            return
        known = self.roster.presences.get(presence.router_id)
        self.roster.apply(presence)
        new_instance = known is None or known.instance_id != presence.instance_id
        if self._joined and presence.status == "online" and new_instance:
            self._hand_over_answers(presence.router_id)

    def _deny_own_will(self, presence: RouterPresence) -> None:
        """Our own Will, published while we live (a NATS cluster publishes it late, when it takes over the session
        of a connection that died with a server): announce ourselves again, or the other routers take our tasks."""
        ours = presence.status == "offline" and presence.instance_id == self.instance_id
        if ours and self._joined and not self._stopping and self.client is not None:
            self.client.publish(self.topics.router_presence(self.router_id), self._presence("online"), retain=True)

    def _hand_over_answers(self, router_id: str) -> None:
        """A router joined or came back as a new instance: share again, retained, the answers it owns now. It read
        the retained ledger when it started, but a broker may have lost entries (NATS drops a retained message
        published while its stream re-elects a leader, and tells no one)."""
        live = self.roster.live()
        for entry in self.ledger.answered_entries(time.time()):
            if rendezvous_owner(entry.task_id, live) == router_id:
                self._publish(self.topics.ledger(entry.task_id), entry, retain=True)

    def _on_ledger(self, topic: str, payload: bytes) -> None:
        self._ledger_heard += 1
        task_id = self.topics.last_level(topic)
        if not payload:
            self.ledger.forget(task_id)
            return
        entry = self._decode_or_log(payload, LedgerEntry)
        if entry is None or entry.task_id != task_id:
            return
        if not self.ledger.apply(entry, time.time()) and self.ledger.is_expired(entry, time.time()):
            self._clear_ledger(task_id)

    def _clear_ledger(self, task_id: str) -> None:
        assert self.client is not None
        self.client.publish(self.topics.ledger(task_id), b"", retain=True)

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, self.config.answer_retention_s / 4))
            self.keep_ledger(time.time())

    def keep_ledger(self, now: float) -> None:
        """Renew our claims on tasks that run longer than half the retention window; clear expired entries."""
        for task_id in list(self._in_flight):
            claim = self.ledger.get(task_id)
            if claim is not None and claim.status == "running" and now - claim.at > self.ledger.retention_s / 2:
                renewed = claim.model_copy(update={"at": now})
                self.ledger.apply(renewed, now)
                self._publish(self.topics.ledger(task_id), renewed, retain=True)
        for task_id in self.ledger.expire(now):
            self._clear_ledger(task_id)

    def _live_instances(self) -> dict[str, str]:
        return {r: p.instance_id for r, p in self.roster.presences.items() if p.status == "online"}

    def live_agents(self) -> Sequence[AgentView]:
        return self.registry.live_agents(time.monotonic(), self.brain.reliability)

    # --- tasks ----------------------------------------------------------------------------------------------

    def _on_submit(self, topic: str, payload: bytes) -> None:
        self.submissions_received += 1
        try:
            request = decode(payload)
            if isinstance(request, TaskCancel):
                self._on_task_cancel(request)
                return
            if not isinstance(request, TaskRequest):
                raise MessageError(f"expected a TaskRequest or TaskCancel, got kind {request.kind!r}")
        except MessageError as error:
            self._refuse(payload, "bad_request", str(error))
            return
        if request.task_id in self._in_flight:
            self._acknowledge_resend(request)  # ours even if its ownership moved since: we finish it
            return
        if self.config.share_group is None and rendezvous_owner(request.task_id, self.roster.live()) != self.router_id:
            return  # another live router owns this task (with a shared subscription the broker chose us)
        client = self.topics.reply_owner(request.reply_topic)
        if client is None:
            log.warning(
                "dropped task %s: reply topic %r is outside %s/reply/",
                request.task_id,
                request.reply_topic[:200],
                self.topics.prefix,
            )
            return
        done = self.ledger.answered(request.task_id)
        if done is not None and done.answer is not None:
            if done.client_id == client:  # an answer is replayed only to the client that asked
                self._publish(request.reply_topic, done.answer.model_copy(update={"replayed": True}))
            else:
                message = "this task id was already answered for another client; use a fresh task id"
                self._publish(
                    request.reply_topic, ErrorReply(code="bad_request", message=message, task_id=request.task_id)
                )
            return
        if self.ledger.claimed_elsewhere(request.task_id, self._live_instances(), self.instance_id) is not None:
            return  # another live router runs it (it was the owner when the task came): it answers
        claim = claim_entry(request.task_id, client, self.router_id, self.instance_id, time.time())
        self.ledger.apply(claim, time.time())
        self._publish(self.topics.ledger(request.task_id), claim, retain=True)
        self._event_topics[request.task_id] = self.topics.task_events(client, request.task_id)
        task = asyncio.create_task(self._handle_task(request), name=f"router[{self.router_id}].task")
        self._in_flight[request.task_id] = task
        self._requests[request.task_id] = request
        if request.options.trace == "summary":
            self._summary_only.add(request.task_id)

    def _on_task_cancel(self, cancel: TaskCancel) -> None:
        """The client went away: stop the task (its runs are cancelled on their agents); no reply follows."""
        request = self._requests.get(cancel.task_id)
        if request is None or request.client_id != cancel.client_id:
            return  # not ours, already answered, or not the client that asked
        self.emit(cancel.task_id, "failed", {"code": "cancelled", "message": cancel.reason[:200]})
        self._in_flight[cancel.task_id].cancel()

    async def _handle_task(self, request: TaskRequest) -> None:
        try:
            reply = await self._answer(request)
        finally:
            self._in_flight.pop(request.task_id, None)
            self._event_topics.pop(request.task_id, None)
            self._requests.pop(request.task_id, None)
            self._chunk_seq.pop(request.task_id, None)
            self._summary_only.discard(request.task_id)
        earlier = self.ledger.answered(request.task_id)
        if earlier is not None and earlier.answer is not None:  # another router answered it meanwhile: one answer
            reply = earlier.answer.model_copy(update={"replayed": True})
        elif isinstance(reply, TaskAnswer):
            self._remember(self.topics.reply_owner(request.reply_topic) or "", reply)
        else:  # not answered: the claim goes, so a resend may try again
            self.ledger.forget(request.task_id)
            self._clear_ledger(request.task_id)
        self._publish(request.reply_topic, reply)

    def _acknowledge_resend(self, request: TaskRequest) -> None:
        """A client resent a task we run: tell it (a `resent` event), and re-ask the task's outstanding runs."""
        outstanding = self._reask(lambda run: run.task_id == request.task_id)
        self.emit(request.task_id, "resent", {"outstanding_runs": outstanding})

    def _reask(self, wanted: Any) -> int:
        """Send the outstanding runs that `wanted(request)` picks again (same dispatch id); returns how many."""
        again = [request for request, future in self._pending.values() if not future.done() and wanted(request)]
        for request in again:
            self._publish(self.topics.agent_run(request.agent_id), request)
        return len(again)

    async def _answer(self, request: TaskRequest) -> TaskAnswer | ErrorReply:
        task_id = request.task_id
        try:
            await self._wait_for_agents(min(self.config.agent_wait_s, request.options.deadline_s / 2))
            pipeline = TaskPipeline(
                request,
                self.brain,
                await self._agents_for(request),
                self,
                self.router_id,
                time.monotonic,
                lambda: self._wait_for_agents(self.config.agent_wait_s),
                self.registry.announced_since,  # agents out of reach are waited for until the deadline
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

    async def _wait_for_agents(self, wait_s: float) -> bool:
        """Give agents a moment to (re)announce themselves, e.g. right after a broker restart (bounded)."""
        deadline = time.monotonic() + wait_s
        while not self.live_agents() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return bool(self.live_agents())

    async def _agents_for(self, request: TaskRequest) -> Any:
        """The agent source of the pipeline: the registry, or the agents that answered a bid round."""
        if request.options.selection == "registry":
            return self.live_agents
        assert self.client is not None
        views = await self.bids.collect(self.client, self.topics, self.router_id, request, list(self.live_agents()))
        self.emit(request.task_id, "screened", {"bids": [view.agent_id for view in views]})
        return lambda: views

    def _remember(self, client: str, answer: TaskAnswer) -> None:
        """Record the answer in the ledger and share it with the other routers (retained)."""
        entry = answered_entry(answer, client, self.router_id, self.instance_id, time.time())
        self.ledger.apply(entry, time.time())
        if client:
            self._publish(self.topics.ledger(answer.task_id), entry, retain=True)

    def _refuse(self, payload: bytes, code: str, message: str) -> None:
        reply_topic, task_id, _ = peek_reply_route(payload)
        log.info("refused a task (%s): %s", code, message[:300])
        if reply_topic is not None and self.topics.reply_owner(reply_topic) is not None:
            self._publish(reply_topic, ErrorReply(code=code, message=message[:4000], task_id=task_id))

    # --- RunPort (used by the pipeline) ---------------------------------------------------------------------

    async def run(self, request: RunRequest, timeout_s: float) -> RunResult:
        """Dispatch a run to its agent and wait for the result; failures come back as error results."""
        assert self.client is not None
        future: asyncio.Future[RunResult] = asyncio.get_running_loop().create_future()
        self._pending[request.dispatch_id] = (request, future)
        self.runs_dispatched += 1
        self._publish(self.topics.agent_run(request.agent_id), request)
        dispatched_at = time.monotonic()
        try:
            # asyncio.wait, not wait_for: wait_for may swallow a cancellation (an early-stopped vote) when the
            # result lands in the same loop iteration, and the cancelled run would then report after the answer.
            while not future.done():
                remaining = self._run_due(dispatched_at, timeout_s) - time.monotonic()
                if remaining <= 0:
                    break
                await asyncio.wait([future], timeout=remaining)
        except asyncio.CancelledError:  # an early-stopped vote, the task's deadline, a client gone: free the agent
            if not future.done():
                self._cancel_run(request, "cancelled")
            raise
        finally:
            self._pending.pop(request.dispatch_id, None)
        if not future.done():
            self._cancel_run(request, "timeout")
            return _failed(request, "timeout", f"no result within {timeout_s:g} s")
        return future.result()

    def _run_due(self, dispatched_at: float, timeout_s: float) -> float:
        """When a run's result is due: `timeout_s` after it was sent, or after our last reconnect.

        Time this router spends cut off from the broker is not the agent's: a reconnect asks the outstanding runs
        again (same dispatch id), so their time starts again then; while disconnected, nothing is due yet.
        """
        assert self.client is not None
        if not self.client.is_connected:
            return time.monotonic() + timeout_s
        return max(dispatched_at, self.client.connected_since or dispatched_at) + timeout_s

    def _cancel_run(self, request: RunRequest, reason: str) -> None:
        if not self.config.cancel_runs or self.client is None:
            return
        cancel = RunCancel(
            dispatch_id=request.dispatch_id, task_id=request.task_id, agent_id=request.agent_id, reason=reason
        )
        self._publish(self.topics.agent_run(request.agent_id), cancel)

    def emit(self, task_id: str, event: str, data: dict[str, Any]) -> None:
        """Publish a trace event of a running task to its client's namespace, without the gold answer."""
        topic = self._event_topics.get(task_id)
        if topic is None:
            return  # not a task of ours (or already answered): nobody to tell
        if task_id in self._summary_only and event not in SUMMARY_EVENTS:
            return  # nobody follows this task step by step: a packet (and its encoding) saved
        public = without_gold(data)
        message = TaskEvent(task_id=task_id, router_id=self.router_id, event=event, at=time.time(), data=public)  # type: ignore[arg-type]
        self._publish(topic, message, qos=0)
        if event in _PROGRESS_EVENTS and self._voted(task_id):  # a single run streams its tokens instead
            self._forward(task_id, "progress", _progress_text(event, public))

    def _voted(self, task_id: str) -> bool:
        request = self._requests.get(task_id)
        return request is not None and request.options.cot_count > 1 and request.options.agent_id is None

    def _forward(self, task_id: str, phase: str, text: str, dispatch_id: str = "") -> None:
        """Send a TaskChunk to the client of a task that asked for a stream."""
        request = self._requests.get(task_id)
        if request is None or not request.options.stream or not text:
            return
        seq = self._chunk_seq.get(task_id, 0)
        self._chunk_seq[task_id] = seq + 1
        chunk = TaskChunk(task_id=task_id, seq=seq, phase=phase, text=text, dispatch_id=dispatch_id)  # type: ignore[arg-type]
        self._publish(request.reply_topic, chunk)

    def _on_inbox(self, topic: str, payload: bytes) -> None:
        try:
            message = decode(payload)
        except MessageError as error:
            log.info("ignoring a malformed inbox message: %s", error)
            return
        if isinstance(message, RunChunk):
            entry = self._pending.get(message.dispatch_id)
            if entry is not None and entry[0].stream and entry[0].agent_id == message.agent_id:
                self._forward(entry[0].task_id, "token", message.text, message.dispatch_id)
        elif isinstance(message, RunResult):
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

    def _publish(self, topic: str, message: Any, qos: int = 1, retain: bool = False) -> None:
        assert self.client is not None
        self.client.publish(topic, message, qos=qos, retain=retain)

    def _decode_or_log(self, payload: bytes, expected: type[Any]) -> Any:
        try:
            return decode(payload, expected)
        except MessageError as error:
            log.info("ignoring a malformed %s: %s", expected.__name__, error)
            return None


def without_gold(data: dict[str, Any]) -> dict[str, Any]:
    """Event data with every `gold_answer` removed (at any depth): events never carry the expected answer."""
    return {key: _strip(value) for key, value in data.items() if key != "gold_answer"}


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return without_gold(value)
    if isinstance(value, (list, tuple)):
        return [_strip(item) for item in value]
    return value


_PROGRESS_EVENTS = frozenset({"planned", "dispatched", "result", "voted"})


def _progress_text(event: str, data: dict[str, Any]) -> str:
    """One line of progress for a streamed task that is voted (its runs' tokens are not streamed)."""
    if event == "dispatched":
        return f"dispatched to {data.get('agent')}"
    if event == "result":
        if data.get("error"):
            return f"{data.get('agent')} failed ({data.get('error')})"
        return f"{data.get('agent')} answered {str(data.get('answer', ''))[:80]!r}"
    if event == "voted":
        return f"voted: {str(data.get('winner', ''))[:80]!r}" if "winner" in data else "vote decided early"
    return f"plan of {len(data.get('plan') or [])} step(s)"


def _failed(request: RunRequest, kind: str, message: str) -> RunResult:
    """The result of a run that produced nothing (timeout, agent death, refusal)."""
    return RunResult(
        dispatch_id=request.dispatch_id,
        task_id=request.task_id,
        agent_id=request.agent_id,
        node_id=UNREACHED_NODE,
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
        policy=settings.policy,
        share_group=settings.share_group,
        rebirth_on_connect=settings.rebirth_on_connect,
        answer_retention_s=settings.answer_retention_s,
        answer_cache_size=settings.ledger_size,
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
